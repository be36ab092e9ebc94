"""Tokenizers, sampling and whole generations against IBM's reference (goldens from tools/parity)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.parity.cases import (
    FILTER_SETTINGS,
    GENERATE_TIMESTEPS,
    SEED,
    TOKENIZER_NAMES,
    InputSpec,
    checksum,
    make_input,
    token_grid,
    tokenizer_input,
)
from xterramind.models import TerraMind, get_config
from xterramind.models.generation import decode_targets, sample_targets
from xterramind.models.registry import tokenizer_config
from xterramind.models.sampling import Sampling, filter_logits, sample
from xterramind.models.tokenizers import Tokenizer
from xterramind.models.weights import init_seeded_

GOLDENS = Path(__file__).parent / "goldens"
TOLERANCE = 1e-4  # fp32 max abs difference, per tensor (the UNet and DDIM chain many convolutions)


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDENS / "parity" / "tokenizers" / "tokenizers.npz")


@pytest.fixture(scope="module")
def tokenizers():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = init_seeded_(Tokenizer.empty(tokenizer_config(name)), SEED).eval()
        return cache[name]

    return get


def _close(actual: torch.Tensor, expected: np.ndarray, what: str, tolerance: float = TOLERANCE):
    assert tuple(actual.shape) == expected.shape, f"{what}: shape {tuple(actual.shape)} != {expected.shape}"
    error = float(np.abs(actual.detach().float().numpy() - expected).max())
    assert error <= tolerance, f"{what}: max abs difference {error:.2e} > {tolerance}"


def _checked(golden, name, tensor):
    np.testing.assert_allclose(checksum(tensor), golden[f"checksum.{name}"], rtol=1e-9, err_msg=f"input {name} drifted")
    return tensor


@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_tokenizer_layout_matches_official_manifest(name):
    manifest = json.loads((GOLDENS / "manifests" / f"tokenizer_{name}.json").read_text())
    with torch.device("meta"):
        tokenizer = Tokenizer(tokenizer_config(name))
    assert {k: list(v.shape) for k, v in tokenizer.state_dict().items()} == manifest["keys"]
    assert sum(p.numel() for p in tokenizer.parameters()) == manifest["parameters"]


@pytest.mark.parametrize("name", ["S2L2A", "LULC"])
@torch.no_grad()
def test_tokenizer_latents_codes_and_tokens(name, golden, tokenizers):
    tokenizer = tokenizers(name)
    x = _checked(golden, f"{name}.pixels", tokenizer_input(name, tokenizer.config.channels))
    _close(tokenizer.encoder.pos_emb, golden[f"{name}.pos_emb"], "stored position table", 0.0)
    _close(tokenizer.latent(x), golden[f"{name}.latent"], f"{name} latent")
    codes, tokens = tokenizer.encode(x)
    assert tokens.dtype == torch.int32
    np.testing.assert_array_equal(tokens.numpy(), golden[f"{name}.tokens"])
    np.testing.assert_array_equal(codes.numpy(), golden[f"{name}.codes"])


@torch.no_grad()
def test_lulc_decoder_logits(golden, tokenizers):
    tokens = _checked(golden, "LULC.fixed_tokens", token_grid("LULC", 4375))
    _close(tokenizers("LULC").decode_logits(tokens), golden["LULC.logits"], "LULC logits")


@torch.no_grad()
def test_unet_output_for_fixed_noise_and_timestep(golden, tokenizers):
    s1 = tokenizers("S1GRD")
    tokens = _checked(golden, "S1GRD.fixed_tokens", token_grid("S1GRD", 15360))
    noise = _checked(golden, "S1GRD.noise", make_input("unet-noise", InputSpec("x", "x", (1, 2, 224, 224))))
    _close(s1.decoder(noise, torch.tensor(500), s1.codes(tokens)), golden["S1GRD.unet_t500"], "UNet at t=500")


@torch.no_grad()
def test_whole_ddim_decode_from_fixed_noise(golden, tokenizers):
    s1 = tokenizers("S1GRD")
    tokens = token_grid("S1GRD", 15360)
    noise = torch.randn((1, 2, 224, 224), generator=torch.Generator().manual_seed(5))
    decoded = s1.decode_diffusion(tokens, noise, GENERATE_TIMESTEPS)
    _close(decoded, golden["S1GRD.ddim"], f"DDIM decode, {GENERATE_TIMESTEPS} steps")
    assert float(decoded.abs().max()) <= 1.0  # x0 is clipped to [-1, 1] at every step


@pytest.mark.parametrize("top_k, top_p", FILTER_SETTINGS)
def test_sampling_filters_and_draws(golden, top_k, top_p):
    logits = _checked(golden, "filters.logits", make_input("filter-logits", InputSpec("x", "x", (4, 50))))
    np.testing.assert_array_equal(filter_logits(logits, top_k, top_p).numpy(), golden[f"filters.k{top_k}.p{top_p}"])
    for temperature in (1.0, 0.7):
        drawn = sample(logits, torch.Generator().manual_seed(11), temperature=temperature, top_k=top_k, top_p=top_p)
        np.testing.assert_array_equal(drawn.numpy(), golden[f"filters.k{top_k}.p{top_p}.t{temperature}.samples"])


@pytest.mark.parametrize("target", ["LULC", "S1GRD"])
@torch.no_grad()
def test_whole_generation_with_the_reference_draws(target, tokenizers):
    """The reference reseeds the global RNG with its seed per step; a tile here reseeds its own generator
    the same way, so for one tile the tokens must agree exactly and the pixels to float precision."""
    golden = np.load(GOLDENS / "parity" / "tiny" / f"generate_{target}.npz")
    model = init_seeded_(TerraMind.empty(get_config("tiny")), SEED).eval()
    x = _checked(golden, "S2L2A", make_input(f"generate-{target}", InputSpec("x", "x", (1, 12, 224, 224))))
    seed = int(golden["seed"])
    tokens, generators = sample_targets(model, {"S2L2A": x}, [f"tok_{target}"], [seed], (14, 14), Sampling())
    np.testing.assert_array_equal(tokens[f"tok_{target}"].numpy(), golden["tokens"])
    out = decode_targets({f"tok_{target}": tokenizers(target)}, tokens, generators, GENERATE_TIMESTEPS)
    _close(out[f"tok_{target}"], golden["output"], f"generated {target}")
