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
import contextlib
import functools
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.parity.cases import (  # noqa: E402
    FILTER_SETTINGS,
    GENERATE_TIMESTEPS,
    GENERATION_SEED,
    SEED,
    TOKENIZER_NAMES,
    checksum,
    decoder_cases,
    encoder_cases,
    hidden_mask,
    make_input,
    token_grid,
    tokenizer_input,
)
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

    # No tokenizers in the backbones: the goldens feed token ids directly, and the coords tokenizer needs
    # the hub. Generation models get the image tokenizers back (see build_generation).
    _reference.tokenizers = dict(terramind_register.tokenizer_dict["v1"])
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
    payload = {k: (v.detach().float() if v.is_floating_point() else v.detach()).numpy() for k, v in arrays.items()}
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


def build_tokenizer(name: str):
    _reference()
    from terratorch.registry import FULL_MODEL_REGISTRY

    return FULL_MODEL_REGISTRY.build(f"terramind_v1_tokenizer_{name.lower()}", pretrained=False).eval()


def write_tokenizer_manifests() -> None:
    for name in TOKENIZER_NAMES:
        tokenizer = build_tokenizer(name)
        manifest = {"tokenizer": name, "keys": {k: list(v.shape) for k, v in tokenizer.state_dict().items()},
                    "parameters": sum(p.numel() for p in tokenizer.parameters())}
        path = OUT / "manifests" / f"tokenizer_{name}.json"
        path.write_text(json.dumps(manifest, indent=1) + "\n")
        print(f"{path.relative_to(ROOT)}: {len(manifest['keys'])} keys, {manifest['parameters']:,} parameters")


@torch.no_grad()
def write_tokenizer_goldens() -> None:
    """Tokens and codes of a diffusion (S2L2A) and the VQ (LULC) tokenizer, LULC class logits, one UNet
    call, a whole DDIM decode from fixed noise, and the sampling filters on fixed logits."""
    from terratorch.models.backbones.terramind.model.generate import GenerationSampler

    arrays, inputs = {}, {}
    for name in ("S2L2A", "LULC"):
        tokenizer = init_seeded_(build_tokenizer(name), SEED)
        x = inputs[f"{name}.pixels"] = tokenizer_input(name, tokenizer.n_channels)
        latent = tokenizer.quant_proj(tokenizer.encoder(tokenizer.prepare_input(x)))
        codes, _, tokens = tokenizer.encode(x)
        arrays |= {f"{name}.latent": latent, f"{name}.codes": codes, f"{name}.tokens": tokens.float(),
                   f"{name}.pos_emb": tokenizer.encoder.pos_emb}
        if name == "LULC":
            fixed = inputs["LULC.fixed_tokens"] = token_grid("LULC", 4375)
            arrays["LULC.logits"] = tokenizer.decode_tokens(fixed)
    s1 = init_seeded_(build_tokenizer("S1GRD"), SEED)
    fixed = inputs["S1GRD.fixed_tokens"] = token_grid("S1GRD", 15360)
    noise = inputs["S1GRD.noise"] = make_input("unet-noise", _spec((1, 2, 224, 224)))
    codes = s1.tokens_to_embedding(fixed)
    arrays["S1GRD.unet_t500"] = s1.decoder(noise, torch.tensor(500), codes)
    arrays["S1GRD.ddim"] = s1.decode_tokens(fixed, timesteps=GENERATE_TIMESTEPS, generator=torch.Generator().manual_seed(5),
                                            verbose=False)
    logits = inputs["filters.logits"] = make_input("filter-logits", _spec((4, 50)))
    sampler = GenerationSampler(None)
    for top_k, top_p in FILTER_SETTINGS:
        arrays[f"filters.k{top_k}.p{top_p}"] = sampler.top_k_top_p_filtering(logits.clone(), top_k, top_p)
        for temperature in (1.0, 0.7):
            torch.manual_seed(11)
            samples, _ = sampler.sample_tokens(logits.clone(), temperature, top_k, top_p)
            arrays[f"filters.k{top_k}.p{top_p}.t{temperature}.samples"] = samples.float()
    _save("tokenizers", "tokenizers", arrays, inputs)


def _spec(shape):
    from tools.parity.cases import InputSpec

    return InputSpec("x", "x", shape)


@contextlib.contextmanager
def _only_tokenizer(key: str):
    """Let the builders see only the tokenizer of ``key`` (the coords tokenizer would need the hub)."""
    from terratorch.models.backbones.terramind.model import terramind_register

    registry = terramind_register.tokenizer_dict["v1"]
    registry[key] = _reference.tokenizers[key]
    try:
        yield
    finally:
        registry.clear()


def _record_tokens(tokenizer, store: dict) -> None:
    """Keep the tokens the reference hands to its tokenizer for decoding."""
    decode = tokenizer.decode_tokens

    def recording(tokens, **kwargs):
        store["tokens"] = tokens.clone()
        return decode(tokens, **kwargs)

    tokenizer.decode_tokens = recording


@torch.no_grad()
def write_generation_goldens(variant: str = "tiny") -> None:
    """A whole S2L2A -> LULC and S2L2A -> S1GRD generation, with the reference's own random draws."""
    _, full_registry, _, _ = _reference()
    for target, key in (("LULC", "tok_lulc@224"), ("S1GRD", "tok_sen1grd@224")):
        with _only_tokenizer(key):
            model = full_registry.build(f"terramind_v1_{variant}_generate", modalities=["S2L2A"], output_modalities=[target],
                                        pretrained=False, standardize=False, timesteps=GENERATE_TIMESTEPS).eval()
        init_seeded_(model.sampler.model, SEED)
        init_seeded_(model.tokenizer[key], SEED)
        recorded = {}
        _record_tokens(model.tokenizer[key], recorded)
        x = make_input(f"generate-{target}", _spec((1, 12, 224, 224)))
        random.seed(GENERATION_SEED)
        seed = random.randint(-(2**31), 2**31 - 1)  # what the reference will draw
        random.seed(GENERATION_SEED)
        out = model({"S2L2A": x})[target]
        arrays = {"output": out, "tokens": recorded["tokens"], "seed": torch.tensor(seed, dtype=torch.int64)}
        _save(variant, f"generate_{target}", arrays, {"S2L2A": x})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifests", action="store_true", help="write the four state-dict manifests")
    parser.add_argument("--outputs", nargs="*", default=[], metavar="VARIANT", help="write output goldens for these variants")
    parser.add_argument("--tokenizers", action="store_true", help="write tokenizer manifests and goldens")
    parser.add_argument("--generation", action="store_true", help="write whole-generation goldens (tiny)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.manifests:
        for variant in VARIANTS:
            write_manifest(variant)
    for variant in args.outputs:
        write_encoder_goldens(variant)
        write_decoder_goldens(variant)
    if args.tokenizers:
        write_tokenizer_manifests()
        write_tokenizer_goldens()
    if args.generation:
        write_generation_goldens()


if __name__ == "__main__":
    main()
