"""Times IBM's reference TerraMind encoder (terratorch) for benchmarks.model, in its own venv.

Reads one JSON request per line on stdin ({"variant", "batch", "precision", "repetitions"}) and
answers one JSON line with the timing, so the caller can interleave it with its own measurements.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.timing import measure


def _backbones():
    library = torch.library.Library("torchvision", "DEF")  # PyPI torchvision beside a CPU torch
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from terratorch.models.backbones.terramind.model import terramind_register
    from terratorch.registry import BACKBONE_REGISTRY

    terramind_register.tokenizer_dict["v1"].clear()
    torch.set_float32_matmul_precision("highest")  # undo terratorch's import-time "medium": compare true fp32
    return library, BACKBONE_REGISTRY


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    _library, backbones = _backbones()
    models = {}
    for line in sys.stdin:
        request = json.loads(line)
        variant = request["variant"]
        if variant not in models:
            models[variant] = backbones.build(f"terramind_v1_{variant}", modalities=["S2L2A"], pretrained=False).eval()
        model = models[variant]
        x = torch.randn(request["batch"], 12, 224, 224)
        bf16 = request["precision"] == "bf16"

        def call(model=model, x=x, bf16=bf16):
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                model({"S2L2A": x})

        timing = measure(call, request["repetitions"])
        print(json.dumps({"seconds": timing.seconds, "kept": timing.kept, "total": timing.total}), flush=True)


if __name__ == "__main__":
    main()
