"""xterramind against IBM's reference: goldens written by tools/parity/make_goldens.py (terratorch).

The reference and these tests build the same seeded random weights (init_seeded_) and the same
seeded inputs (tools/parity/cases.py); only the reference's outputs are stored.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.parity.cases import SEED, checksum, decoder_cases, encoder_cases, hidden_mask, make_input
from xterramind.models import TerraMind, get_config
from xterramind.models.handle import full_layout
from xterramind.models.weights import init_seeded_

GOLDENS = Path(__file__).parent / "goldens"
TOLERANCE = 1e-5  # max abs difference, fp32
GOLDEN_VARIANTS = ("tiny", "base")


@pytest.fixture(scope="module")
def reference_weights():
    """The full models the goldens were made with, built once per variant."""
    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = init_seeded_(TerraMind.empty(get_config(variant)), SEED).eval()
        return cache[variant]

    return get


def _inputs_and_golden(case):
    """The case's seeded inputs, checked against the checksums stored with its golden outputs."""
    inputs = {spec.name: make_input(case.name, spec) for spec in case.inputs}
    golden = np.load(GOLDENS / "parity" / case.variant / f"{case.name}.npz")
    for name, tensor in inputs.items():
        np.testing.assert_allclose(checksum(tensor), golden[f"checksum.{name}"], rtol=1e-9,
                                   err_msg=f"seeded input {name} differs from the one the goldens were made with")
    return inputs, golden


def _cases(make):
    cases = [case for variant in GOLDEN_VARIANTS for case in make(variant)]
    return pytest.mark.parametrize("case", cases, ids=[f"{c.variant}-{c.name}" for c in cases])


def _assert_close(actual: torch.Tensor, expected: np.ndarray, what: str):
    assert tuple(actual.shape) == expected.shape, f"{what}: shape {tuple(actual.shape)} != {expected.shape}"
    error = float(np.abs(actual.numpy() - expected).max())
    assert error <= TOLERANCE, f"{what}: max abs difference {error:.2e} > {TOLERANCE}"


@pytest.mark.parametrize("variant", ["tiny", "small", "base", "large"])
def test_state_dict_layout_matches_official_manifest(variant):
    manifest = json.loads((GOLDENS / "manifests" / f"terramind_v1_{variant}.json").read_text())
    layout = {k: list(v) for k, v in full_layout(get_config(variant)).items()}
    assert layout == manifest["keys"]
    with torch.device("meta"):
        model = TerraMind(get_config(variant))
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]


@_cases(encoder_cases)
@torch.no_grad()
def test_encoder_layers_match_reference(case, reference_weights):
    inputs, golden = _inputs_and_golden(case)
    outputs = reference_weights(case.variant).encode(inputs, merge=case.merge, layers=list(case.layers))
    for layer, output in zip(case.layers, outputs, strict=True):
        if isinstance(output, dict):
            assert {f"L{layer}.{name}" for name in output} == {k for k in golden if k.startswith(f"L{layer}.")}
            for name, value in output.items():
                _assert_close(value, golden[f"L{layer}.{name}"], f"layer {layer} {name}")
        else:
            _assert_close(output, golden[f"L{layer}"], f"layer {layer}")


@_cases(decoder_cases)
@torch.no_grad()
def test_decoder_logits_match_reference(case, reference_weights):
    model = reference_weights(case.variant)
    inputs, golden = _inputs_and_golden(case)
    hidden = {
        name: hidden_mask(case.name, name, inputs[name].shape[0], inputs[name][0].numel(), visible)
        for name, visible in case.visible.items()
    }
    context = model.encode_context(inputs, hidden)
    positions = torch.from_numpy(golden["positions"]).long()
    logits = model.decode_grid(context, case.target, case.grid, positions)
    _assert_close(logits, golden["logits"], f"{case.target} logits")
