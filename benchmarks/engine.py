"""Engine benchmarks: efficiency, memory growth, and IBM's tiled_inference side by side.

    python -m benchmarks.engine [--size 4032] [--reference-python /path/to/venv-with-terratorch/bin/python]

(a) efficiency: end-to-end tiles/s (read a zarr cube -> normalize -> tile -> model -> stitch -> write
    zarr) divided by model-only tiles/s at the same batch size, measured alternately in one process;
(b) memory: peak RSS of the end-to-end run on a 4x larger area, each size in a fresh process;
(c) with a terratorch Python: terratorch's tiled_inference on the same weights and cube (the token
    grid upsampled to pixels, since it only stitches pixel-resolution outputs): time and peak RSS.

The cubes are the bundled real Sentinel-2 scene mirrored into a larger mosaic, stored as zarr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "terramind_v1_tiny"
SEED = 0


def build_source(size: int, folder: Path, bands: list[str] | None = None) -> Path:
    """The real scene mirrored into a ``size`` x ``size`` px uint16 cube (all 13 bands, or ``bands``), as zarr."""
    import dask.array as da
    import rioxarray  # noqa: F401
    import xarray as xr

    from xterramind.data import open_sample

    path = folder / f"source-{size}-{len(bands) if bands else 13}.zarr"
    if path.exists():
        return path
    sample = open_sample() if bands is None else open_sample().sel(band=bands)
    scene = sample.values
    count, step = scene.shape[0], scene.shape[1]
    copies = -(-size // step)

    def mirrored(block_info=None):
        row, col = block_info[None]["chunk-location"][1:]
        return np.ascontiguousarray(scene[:, :: (-1 if row % 2 else 1), :: (-1 if col % 2 else 1)])

    data = da.map_blocks(mirrored, chunks=((count,), (step,) * copies, (step,) * copies), dtype=scene.dtype)
    transform = sample.rio.transform()
    cube = xr.DataArray(
        data[:, :size, :size].rechunk((count, 512, 512)), dims=("band", "y", "x"),
        coords={"band": sample["band"].values, "y": transform.f + transform.e * (np.arange(size) + 0.5),
                "x": transform.c + transform.a * (np.arange(size) + 0.5)},
        name="reflectance",
    ).rio.write_crs(sample.rio.crs)
    with warnings.catch_warnings():  # zarr-python flags the band-name strings as not yet in the v3 spec
        warnings.simplefilter("ignore")
        cube.to_dataset().to_zarr(path, mode="w", zarr_format=3, consolidated=False)
    return path


def open_source(path: Path):
    import xarray as xr

    return xr.open_zarr(path, decode_coords="all", consolidated=False)["reflectance"]


def best_alternated(ways: dict, rounds: int, launch) -> dict:
    """Each way's fastest of ``rounds`` runs, the ways alternated round by round (load on a shared machine then
    weighs on all of them alike). ``ways``: name -> (the child's arguments, its python or None); ``launch(*child,
    python=...)`` runs one and gives its result, with ``seconds``."""
    runs = {what: [] for what in ways}
    for _ in range(rounds):
        for what, (child, python) in ways.items():
            runs[what].append(launch(*child, python=python))
    return {what: min(found, key=lambda run: run["seconds"]) for what, found in runs.items()}


def peak_rss_kib() -> int:
    """This process's peak RSS since it started, in KiB: Linux's VmHWM, which an exec resets (``ru_maxrss`` carries
    the forking parent's peak over an exec, so a fresh process of a large parent would report the parent's)."""
    try:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def peak_rss_gb() -> float:
    return peak_rss_kib() / 1e6


def child_xterramind(path: Path, out: Path, rounds: int, batch: int) -> dict:
    """End-to-end write, alternating with model-only timing; best of each."""
    import torch

    import xterramind
    from xterramind.grid import Tiling
    from xterramind.modalities import grid_of, resolve

    model = xterramind.load_model(MODEL, weights="random", seed=SEED, device="cpu", precision="fp32")
    cube = open_source(path)
    tiles = Tiling(grid_of(resolve(cube)[0].data, "cube")).tile_count
    x = torch.randn(batch, 13, 224, 224)
    model_rates, e2e_rates = [], []
    for _ in range(rounds):
        model.encode({"S2L1C": x}, layers=-1)
        start = time.perf_counter()
        for _ in range(4):
            model.encode({"S2L1C": x}, layers=-1)
        model_rates.append(4 * batch / (time.perf_counter() - start))
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        cube.terramind.embed(model, batch_size=batch).terramind.to_zarr(out, progress=False)
        e2e_rates.append(tiles / (time.perf_counter() - start))
    return {"tiles": tiles, "model": max(model_rates), "e2e": max(e2e_rates), "seconds": tiles / max(e2e_rates),
            "peak_gb": peak_rss_gb()}


def child_terratorch(path: Path, batch: int) -> dict:
    """IBM's tiled_inference over the same cube: model forward -> token grid upsampled to pixels."""
    import torch

    library = torch.library.Library("torchvision", "DEF")  # PyPI torchvision beside a CPU torch
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    from terratorch.models.backbones.terramind.model import terramind_register
    from terratorch.registry import BACKBONE_REGISTRY
    from terratorch.tasks.tiled_inference import tiled_inference

    from xterramind.models.registry import resolve_modality
    from xterramind.models.weights import init_seeded_

    terramind_register.tokenizer_dict["v1"].clear()
    torch.set_float32_matmul_precision("highest")
    vit = BACKBONE_REGISTRY.build("terramind_v1_tiny", modalities=["S2L1C"], pretrained=False).eval()
    init_seeded_(vit, SEED)
    spec = resolve_modality("S2L1C")
    mean, std = torch.tensor(spec.mean)[:, None, None], torch.tensor(spec.std)[:, None, None]
    start = time.perf_counter()
    pixels = torch.from_numpy(open_source(path).values.astype(np.float32))  # tiled_inference needs it in memory
    standardized = ((pixels - mean) / std)[None]

    def forward(chips):
        tokens = vit({"S2L1C": chips})[-1]  # (b, 196, D)
        grid = tokens.transpose(1, 2).reshape(len(chips), -1, 14, 14)
        return torch.nn.functional.interpolate(grid, scale_factor=16, mode="nearest")

    with torch.inference_mode():
        output = tiled_inference(forward, standardized, crop=224, stride=192, batch_size=batch, verbose=False)
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_rss_gb(), "shape": list(output.shape)}


def in_fresh_process(module: str, kind: str, *args, python: str | None = None) -> dict:
    """``python -m module --child kind *args`` in a fresh process (so each figure starts cold): its last line, as JSON."""
    command = [python or sys.executable, "-m", module, "--child", kind, *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(kind: str, *args, python: str | None = None) -> dict:
    return in_fresh_process("benchmarks.engine", kind, *args, python=python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4032, help="side of the efficiency cube in px (>= 4000)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference-python", default=os.environ.get("XTERRAMIND_REFERENCE_PYTHON"))
    parser.add_argument("--reference-size", type=int, default=2048, help="cube side for (c): its output is held in RAM")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path, *rest = args.child
        if kind == "xterramind":
            result = child_xterramind(Path(path), Path(rest[0]), int(rest[1]), int(rest[2]))
        else:
            result = child_terratorch(Path(path), int(rest[0]))
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="xterramind-bench-") as folder:
        folder = Path(folder)
        small, large = build_source(args.size, folder), build_source(2 * args.size, folder)
        a = _child("xterramind", str(small), str(folder / "out-a.zarr"), str(args.rounds), str(args.batch))
        b = _child("xterramind", str(large), str(folder / "out-b.zarr"), "1", str(args.batch))
        print(f"{MODEL} on the CPU, batch {args.batch}, real Sentinel-2 mirrored into zarr cubes")
        print(f"(a) efficiency, {args.size} x {args.size} px, {a['tiles']} tiles:")
        print(f"    end-to-end {a['e2e']:.1f} tiles/s, model only {a['model']:.1f} tiles/s, ratio {a['e2e'] / a['model']:.2f}")
        print(f"(b) memory: peak RSS {a['peak_gb']:.2f} GB at {args.size}^2 px, {b['peak_gb']:.2f} GB at "
              f"{2 * args.size}^2 px (4x the area): {100 * (b['peak_gb'] / a['peak_gb'] - 1):+.1f} %")
        if args.reference_python:
            cube = build_source(args.reference_size, folder)
            ours = _child("xterramind", str(cube), str(folder / "out-c.zarr"), "1", str(args.batch))
            theirs = _child("terratorch", str(cube), str(args.batch), python=args.reference_python)
            print(f"(c) {args.reference_size}^2 px: xterramind {ours['seconds']:.1f} s, {ours['peak_gb']:.2f} GB; "
                  f"terratorch tiled_inference {theirs['seconds']:.1f} s, {theirs['peak_gb']:.2f} GB "
                  f"(time ratio {theirs['seconds'] / ours['seconds']:.2f}x, memory ratio {theirs['peak_gb'] / ours['peak_gb']:.2f}x)")


if __name__ == "__main__":
    main()
