"""Write parity goldens from IBM's reference implementation (terratorch), to test xterramind against.

Run it in a separate environment that has terratorch (never a dependency of xterramind); see
``tools/parity/README.md``. It writes, under ``tests/goldens/``:

- ``manifests/terramind_v1_{variant}.json``: every state-dict name and shape of the full official
  checkpoint layout (13 encoder and 7 decoder embeddings) of all four variants;
- ``parity/{variant}/{case}.npz``: reference outputs for the cases in ``tools/parity/cases.py``,
  computed with seeded random weights (``xterramind.models.weights.init_seeded_``, so the tests can
  rebuild the same weights without storing them).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.parity.cases import SEED, checksum, decoder_cases, encoder_cases, hidden_mask, make_input  # noqa: E402
from xterramind.models.weights import init_seeded_  # noqa: E402

OUT = ROOT / "tests" / "goldens"
VARIANTS = ("tiny", "small", "base", "large")


def _shim_torchvision() -> None:
    """PyPI's torchvision beside a CPU torch lacks two operator schemas that its import registers."""
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _shim_torchvision.library = library  # the schemas live as long as the library object


@functools.cache
def _reference():
    _shim_torchvision()
    from terratorch.models.backbones.terramind.model import terramind_register
    from terratorch.models.backbones.terramind.model.generate import GenerationSampler
    from terratorch.models.backbones.terramind.model.modality_info import MODALITY_INFO
    from terratorch.registry import BACKBONE_REGISTRY, FULL_MODEL_REGISTRY

    # No tokenizers: the goldens feed token ids directly, and the coords tokenizer needs the hub.
    terramind_register.tokenizer_dict["v1"].clear()
    # terratorch 1.2.11's tiny and small `*_encdec` builders pass `pretrained_bands`, which
    # TerraMind() rejects; drop it so the registered hyper-parameters can still be used as they are.
    build_encdec = terramind_register.build_terrammind_encdec
    terramind_register.build_terrammind_encdec = lambda pretrained_bands=None, **kwargs: build_encdec(**kwargs)
    # Importing terratorch sets float32_matmul_precision to "medium", which lets oneDNN trade fp32
    # accuracy for speed (~5e-6 here); goldens must be true fp32.
    torch.set_float32_matmul_precision("highest")
    return BACKBONE_REGISTRY, FULL_MODEL_REGISTRY, MODALITY_INFO, GenerationSampler


ENCODER_KEYS = (
    "untok_sen2l2a@224", "untok_sen2l1c@224", "untok_sen2rgb@224", "untok_sen1grd@224", "untok_sen1rtc@224",
    "untok_dem@224", "tok_sen2l2a@224", "tok_sen1grd@224", "tok_sen1rtc@224", "tok_dem@224", "tok_ndvi@224",
    "tok_lulc@224", "coords",
)
DECODER_KEYS = ("tok_sen2l2a@224", "tok_sen1grd@224", "tok_sen1rtc@224", "tok_dem@224", "tok_lulc@224", "tok_ndvi@224", "coords")


def build_full(variant: str):
    """The full encoder-decoder with every embedding the official checkpoints hold."""
    _, full_registry, info, _ = _reference()

    def embeddings(keys, kind):
        return {key: info[key][kind](image_size=224, **{k: v for k, v in info[key].items() if k != kind}) for key in keys}

    return full_registry.build(
        f"terramind_v1_{variant}_encdec",
        encoder_embeddings=embeddings(ENCODER_KEYS, "encoder_embedding"),
        decoder_embeddings=embeddings(DECODER_KEYS, "decoder_embedding"),
        modality_info=info,
    ).eval()


def write_manifest(variant: str) -> None:
    model = build_full(variant)
    state = model.state_dict()
    unique = {id(p): p.numel() for p in model.parameters()}
    manifest = {
        "variant": f"terramind_v1_{variant}",
        "source": "terratorch 1.2.11 (TerraMind code identical to 1.2.13)",
        "parameters": sum(unique.values()),
        "keys": {k: list(v.shape) for k, v in state.items()},
    }
    path = OUT / "manifests" / f"terramind_v1_{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(state)} keys, {manifest['parameters']:,} parameters")


def _save(variant: str, case_name: str, arrays: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]) -> None:
    path = OUT / "parity" / variant / f"{case_name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: v.detach().float().numpy() for k, v in arrays.items()}
    payload |= {f"checksum.{name}": np.asarray(checksum(t)) for name, t in inputs.items()}
    np.savez_compressed(path, **payload)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")


@torch.no_grad()
def write_encoder_goldens(variant: str) -> None:
    backbones, _, _, _ = _reference()
    for case in encoder_cases(variant):
        keys = [spec.key for spec in case.inputs]
        merge = None if case.merge == "none" else case.merge
        vit = backbones.build(f"terramind_v1_{variant}", modalities=keys, merge_method=merge, pretrained=False)
        init_seeded_(vit.eval(), SEED)
        inputs = {spec.name: make_input(case.name, spec) for spec in case.inputs}
        outputs = vit({spec.key: inputs[spec.name] for spec in case.inputs})
        names = {spec.key: spec.name for spec in case.inputs}
        arrays = {}
        for layer in case.layers:
            out = outputs[layer]
            if isinstance(out, dict):
                arrays |= {f"L{layer}.{names[key]}": value for key, value in out.items()}
            else:
                arrays[f"L{layer}"] = out
        _save(variant, case.name, arrays, inputs)


@torch.no_grad()
def write_decoder_goldens(variant: str) -> None:
    _, _, _, sampler_class = _reference()
    model = build_full(variant)
    init_seeded_(model, SEED)
    sampler = sampler_class(model)
    for case in decoder_cases(variant):
        inputs = {spec.name: make_input(case.name, spec) for spec in case.inputs}
        mod_dict = {}
        for spec in case.inputs:
            tensor = inputs[spec.name]
            batch, length = tensor.shape[0], _token_count(spec, tensor)
            mask = torch.zeros(batch, length, dtype=torch.bool)
            if spec.name in case.visible:
                mask = hidden_mask(case.name, spec.name, batch, length, case.visible[spec.name])
            mod_dict[spec.key] = {"tensor": tensor, "input_mask": mask, "target_mask": ~mask}
        if case.target_key not in mod_dict:
            batch, cells = next(iter(inputs.values())).shape[0], case.grid[0] * case.grid[1]
            mod_dict[case.target_key] = {
                "tensor": torch.zeros(batch, cells, dtype=torch.int64),
                "input_mask": torch.ones(batch, cells, dtype=torch.bool),
                "target_mask": torch.zeros(batch, cells, dtype=torch.bool),
            }
        logits, positions = sampler.forward_enc_dec_roar_batched(mod_dict, case.target_key, case.num_select, seed=case.seed)
        _save(variant, case.name, {"logits": logits, "positions": positions.float()}, inputs)


def _token_count(spec, tensor: torch.Tensor) -> int:
    if not spec.vocab:  # raw image: one token per 16 x 16 patch
        return (tensor.shape[-2] // 16) * (tensor.shape[-1] // 16)
    return tensor[0].numel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", action="store_true", help="write the four state-dict manifests")
    parser.add_argument("--outputs", nargs="*", default=[], metavar="VARIANT", help="write output goldens for these variants")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.manifests:
        for variant in VARIANTS:
            write_manifest(variant)
    for variant in args.outputs:
        write_encoder_goldens(variant)
        write_decoder_goldens(variant)


if __name__ == "__main__":
    main()
