"""Times IBM's reference TerraMind (terratorch) for the benchmarks, in its own venv.

Reads one JSON request per line on stdin and answers one JSON line with the timing, so the caller can
interleave it with its own measurements. Requests: ``{"kind": "encode" | "generate" | "diffusion",
"variant", "batch", "precision", "repetitions"}`` (``generate``: S2L2A -> LULC; ``diffusion``: one
DDIM step of the S1GRD tokenizer's UNet per call).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import measure


def registries():
    library = torch.library.Library("torchvision", "DEF")  # PyPI torchvision beside a CPU torch
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from terratorch.models.backbones.terramind.model import terramind_register
    from terratorch.registry import BACKBONE_REGISTRY, FULL_MODEL_REGISTRY

    tokenizers = dict(terramind_register.tokenizer_dict["v1"])
    for key in list(tokenizers):  # the coords tokenizer needs the hub; none of these uses it
        if key not in ("tok_lulc@224",):
            terramind_register.tokenizer_dict["v1"].pop(key)
    torch.set_float32_matmul_precision("highest")  # undo terratorch's import-time "medium": compare true fp32
    return library, BACKBONE_REGISTRY, FULL_MODEL_REGISTRY


def _build(kind: str, variant: str, backbones, full):
    if kind == "encode":
        return backbones.build(f"terramind_v1_{variant}", modalities=["S2L2A"], pretrained=False).eval()
    if kind == "generate":
        return full.build(f"terramind_v1_{variant}_generate", modalities=["S2L2A"], output_modalities=["LULC"],
                          pretrained=False, standardize=False).eval()
    return full.build("terramind_v1_tokenizer_s1grd", pretrained=False).eval()


def _call(kind: str, model, batch: int):
    if kind in ("encode", "generate"):
        x = torch.randn(batch, 12, 224, 224)
        return lambda: model({"S2L2A": x})
    tokens = torch.randint(0, 15360, (batch, 14, 14))
    return lambda: model.decode_tokens(tokens, timesteps=1, verbose=False)


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    _library, backbones, full = registries()
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        kind = request.get("kind", "encode")
        key = (kind, request["variant"])
        if key not in models:
            models[key] = _build(kind, request["variant"], backbones, full)
        run = _call(kind, models[key], request["batch"])
        bf16 = request["precision"] == "bf16"

        def call(run=run, bf16=bf16):
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                run()

        timing = measure(call, request["repetitions"], warmup=1)
        print(json.dumps({"seconds": timing.seconds, "kept": timing.kept, "total": timing.total}), flush=True)


if __name__ == "__main__":
    main()
