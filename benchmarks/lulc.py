"""LULC generation over a cube against IBM's ``tiled_inference``: time and peak memory, side by side.

    python -m benchmarks.lulc --reference-python /path/to/venv-with-terratorch/bin/python [--sizes 1920 3840]

Both sides: TerraMind-tiny S2L2A -> LULC, the same seeded random weights, fp32 on the CPU, 224 px tiles at
stride 192, batch 8, the bundled real Sentinel-2 scene mirrored into a ``size`` x ``size`` px cube, each
run in a fresh process and the two alternated ``--rounds`` times (best kept).

- xterramind: ``generate("LULC") -> to_zarr`` from the cube stored as zarr (classes and their blended
  probabilities, as stored by default, and with ``probabilities="uint8"``);
- terratorch: the cube in memory (``tiled_inference`` needs it there), the generation model's LULC logits
  blended by ``tiled_inference`` and the argmax taken.

Peak memory is the process's peak RSS, each in its own process (the reference's includes its model, as ours).
Without ``--reference-python`` only xterramind's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.engine import SEED, best_alternated, build_source, in_fresh_process, open_source, peak_rss_gb
from benchmarks.plumbing import L2A_BANDS

STRIDE, TILE = 192, 224


def child_xterramind(cube_path: Path, out: Path, batch: int, probabilities: str) -> dict:
    import xterramind

    model = xterramind.load_model("terramind_v1_tiny", weights="random", seed=SEED, device="cpu", precision="fp32")
    cube = open_source(cube_path)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    lulc = cube.terramind.generate("LULC", model, batch_size=batch, overlap=TILE - STRIDE, seed=SEED,
                                   probabilities=probabilities)
    lulc.terramind.to_zarr(out, progress=False)
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_rss_gb()}


def child_terratorch(pixels_path: Path, batch: int) -> dict:
    import torch

    from benchmarks.reference_worker import registries
    from xterramind.models.registry import resolve_modality
    from xterramind.models.weights import init_seeded_

    _library, _backbones, full = registries()
    model = full.build("terramind_v1_tiny_generate", modalities=["S2L2A"], output_modalities=["LULC"],
                       pretrained=False, standardize=False).eval()
    init_seeded_(model, SEED)
    from terratorch.tasks.tiled_inference import tiled_inference

    spec = resolve_modality("S2L2A")
    mean, std = torch.tensor(spec.mean)[:, None, None], torch.tensor(spec.std)[:, None, None]
    start = time.perf_counter()
    pixels = torch.from_numpy(np.load(pixels_path).astype(np.float32))
    standardized = ((pixels - mean) / std)[None]
    with torch.inference_mode():
        logits = tiled_inference(lambda chips: model({"S2L2A": chips})["LULC"], standardized, crop=TILE,
                                 stride=STRIDE, batch_size=batch, verbose=False)
        classes = logits.argmax(dim=1).to(torch.uint8)
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_rss_gb(), "shape": list(classes.shape)}


def _child(*args, python: str | None = None) -> dict:
    return in_fresh_process("benchmarks.lulc", *args, python=python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1920, 3840])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference-python", default=os.environ.get("XTERRAMIND_REFERENCE_PYTHON"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        result = (child_xterramind(Path(path), Path(rest[0]), int(rest[1]), rest[2]) if kind == "xterramind"
                  else child_terratorch(Path(path), int(rest[0])))
        print(json.dumps(result))
        return
    print(f"TerraMind-tiny S2L2A -> LULC, fp32, CPU ({os.cpu_count()} cores), {TILE} px tiles at stride {STRIDE}, "
          f"batch {args.batch}; best of {args.rounds} alternated fresh processes")
    header = f"{'size':>6}{'what':>34}{'s':>8}{'km2/s':>8}{'peak GB':>9}"
    print(header + (f"{'speed vs tt':>13}{'memory vs tt':>14}" if args.reference_python else ""))
    with tempfile.TemporaryDirectory(prefix="xterramind-lulc-") as folder:
        folder = Path(folder)
        for size in args.sizes:
            cube = build_source(size, folder, L2A_BANDS)
            ways = {f"xterramind, {kind} probabilities": (("xterramind", cube, folder / "lulc.zarr", args.batch, kind),
                                                          None) for kind in ("float32", "uint8")}
            if args.reference_python:  # the cube in memory, as tiled_inference needs it
                pixels = folder / f"pixels-{size}.npy"
                np.save(pixels, open_source(cube).values)
                ways["terratorch tiled_inference"] = (("terratorch", pixels, args.batch), args.reference_python)
            best = best_alternated(ways, args.rounds, _child)
            reference = best.get("terratorch tiled_inference")
            km2 = (size * 10 / 1000) ** 2
            for what, run in best.items():
                line = f"{size:>6}{what:>34}{run['seconds']:>8.1f}{km2 / run['seconds']:>8.2f}{run['peak_gb']:>9.2f}"
                if reference:
                    line += f"{reference['seconds'] / run['seconds']:>12.2f}x{run['peak_gb'] / reference['peak_gb']:>13.2f}x"
                print(line)


if __name__ == "__main__":
    main()
