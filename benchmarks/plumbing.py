"""The engine's own cost: core-ms per tile with the model replaced by one that costs nothing, and how busy a
simulated accelerator is kept.

    python -m benchmarks.plumbing [--size 4032] [--batch 8]

The input is the bundled real Sentinel-2 scene mirrored into a ``size`` x ``size`` px, 12-band (L2A band
set), uint16, zstd-compressed zarr cube on disk. Each figure runs in a fresh process.

(a) plumbing: ``embed -> to_zarr`` with TerraMind-B's output width (768) and ``generate("LULC") -> to_zarr``,
    ``encode`` / ``generate`` replaced by zeros of the right shape: the process's CPU seconds (user + sys)
    per tile, in core-ms; and the tiles the model was given per tile of the lattice (above 1: tiles at the edge of
    two regions run by both, generate's blended pixels needing every tile that overlaps a region; a count, not a
    timing, so the same on any machine);
(b) a simulated accelerator: ``encode`` holds "the device" (a lock) for a fixed time per batch without holding
    the GIL (it sleeps), set to 70 % of the rate (a) measured, so that the device, not the CPU, should be the
    bottleneck: the fraction of the wall time the device is busy; also on a cube of twice the side, where the
    first region's read (the device has nothing to do yet: ~0.3 s here) weighs a quarter as much;
(scale) the read of one region's window (1,984 px, 12 bands) of lazy cubes of 51,200 and 307,200 px square (about a
    continent at 10 m) read from zarr with xarray, no chunk written (nothing to decode): its milliseconds stay the
    same whatever the cube's size (``xterramind.graphs``; dask's own culling lists every chunk of the cube).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.engine import build_source, in_fresh_process, open_source

ROOT = Path(__file__).resolve().parents[1]
L2A_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def _usage() -> tuple[float, float, int]:
    """The process's CPU seconds so far (user, sys) and its minor page faults (fresh memory touched)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def child(kind: str, cube_path: Path, out: Path, batch: int, device_seconds: float) -> dict:
    """One measured write in this process: ``kind`` is ``embed`` or ``generate``; ``device_seconds`` > 0 makes
    ``encode`` a simulated accelerator holding the device that long per batch."""
    import torch

    import xterramind
    from xterramind.grid import Tiling
    from xterramind.models.handle import TerraMindModel

    name = "terramind_v1_base" if kind == "embed" else "terramind_v1_tiny"
    model = xterramind.load_model(name, weights="random", device="cpu", precision="fp32")
    _ = model.module  # built now, not inside the measured write (base's seeded weights take seconds)
    cube = open_source(cube_path)
    device, busy, run = threading.Lock(), [0.0], [0]  # run: tiles given to the model (a tile twice if run twice)

    def encode(self, inputs, *, merge="mean", layers=-1, **_):
        first = next(iter(inputs.values()))
        run[0] += len(first)
        if device_seconds:
            with device:  # one batch on the device at a time; sleeping releases the GIL as a GPU kernel does
                time.sleep(device_seconds)
                busy[0] += device_seconds
        return torch.zeros(len(first), (first.shape[-1] // 16) ** 2, self.config.dim)

    def generate(self, inputs, targets, *, seeds, **_):
        first = next(iter(inputs.values()))
        run[0] += len(first)
        return {"LULC": torch.zeros(len(first), 10, first.shape[-2], first.shape[-1])}

    TerraMindModel.encode, TerraMindModel.generate = encode, generate
    tiles = Tiling(xterramind.geo.grid_of(cube, "cube")).tile_count
    result = (cube.terramind.embed(model, batch_size=batch) if kind == "embed"
              else cube.terramind.generate("LULC", model, batch_size=batch))
    shutil.rmtree(out, ignore_errors=True)
    before, wall = _usage(), time.perf_counter()
    result.terramind.to_zarr(out, progress=False)
    (user, system, faults), wall = (b - a for a, b in zip(before, _usage(), strict=True)), time.perf_counter() - wall
    return {"tiles": tiles, "core_ms": 1000 * (user + system) / tiles, "sys_ms": 1000 * system / tiles,
            "faults": faults / tiles, "runs": run[0] / tiles, "wall": wall, "tiles_per_s": tiles / wall, "device_busy": busy[0] / wall}


def window_read_ms(folder: Path, side: int, repeats: int = 5) -> float:
    """Best milliseconds of a region's read (``executor.Compute`` of a 1,984 px window) of a ``side`` px square lazy
    cube whose chunks are all unwritten."""
    import numpy as np
    import xarray as xr
    import zarr

    from xterramind.executor import Compute

    path = folder / f"unwritten-{side}.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("reflectance", shape=(12, side, side), chunks=(12, 512, 512), dtype="uint16", fill_value=1000,
                       dimension_names=("band", "y", "x"))
    for name in ("y", "x"):
        group.create_array(name, data=np.arange(side, dtype=np.float64), dimension_names=(name,))
    cube = xr.open_zarr(path, consolidated=False)["reflectance"].isel(band=list(range(12)))
    best = float("inf")
    for repeat in range(repeats):
        start = side // 2 + repeat * 1920
        window = cube.data[:, start : start + 1984, start : start + 1984]
        began = time.perf_counter()
        Compute((window,))()
        best = min(best, time.perf_counter() - began)
    return 1000 * best


def _child(*args) -> dict:
    return in_fresh_process("benchmarks.plumbing", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4032, help="cube side in px (>= 4000 for the issue's figure)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-steady", dest="steady", action="store_false",
                        help="skip (b) on a cube of twice the side (its start-up amortized)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, cube, out, batch, seconds = args.child
        print(json.dumps(child(kind, Path(cube), Path(out), int(batch), float(seconds))))
        return
    with tempfile.TemporaryDirectory(prefix="xterramind-plumbing-") as folder:
        folder = Path(folder)
        cube = build_source(args.size, folder, L2A_BANDS)
        embed = _child("embed", cube, folder / "embed.zarr", args.batch, 0)
        lulc = _child("generate", cube, folder / "lulc.zarr", args.batch, 0)
        per_batch = args.batch / (0.7 * embed["tiles_per_s"])  # the device at 70 % of the pipeline's rate
        fed = _child("embed", cube, folder / "fed.zarr", args.batch, per_batch)
        # the same device on 4x the area: the first region's read, when the device has nothing yet, amortized
        large = build_source(2 * args.size, folder, L2A_BANDS) if args.steady else None
        steady = _child("embed", large, folder / "steady.zarr", args.batch, per_batch) if large else None
        scale = {side: window_read_ms(folder, side) for side in (51_200, 307_200)}
    print(f"{args.size} x {args.size} px, 12-band uint16 zarr, batch {args.batch}, {os.cpu_count()} cores, "
          f"a zero-cost model")
    print(f"{'figure':<52}{'value':>12}")
    print(f"{'(a) embed -> to_zarr, 768-d: core-ms per tile':<52}{embed['core_ms']:>12.2f}")
    print(f"{'(a) generate LULC -> to_zarr: core-ms per tile':<52}{lulc['core_ms']:>12.2f}")
    for kind, figures in (("embed", embed), ("generate", lulc)):
        print(f"{f'    {kind}: of which system (page faults, I/O)':<52}{figures['sys_ms']:>12.2f}")
        print(f"{f'    {kind}: fresh pages touched per tile':<52}{figures['faults']:>12.0f}")
    for kind, figures in (("embed", embed), ("generate", lulc)):  # > 1: tiles of two regions' edges run by both
        print(f"{f'    {kind}: model runs per tile of the lattice':<52}{figures['runs']:>12.2f}")
    print(f"{'    embed: tiles/s (wall)':<52}{embed['tiles_per_s']:>12.1f}")
    print(f"{'(b) simulated device at 70 % of that: busy fraction':<52}{fed['device_busy']:>12.2f}")
    if steady:
        print(f"{f'    the same on {2 * args.size} x {2 * args.size} px: busy fraction':<52}{steady['device_busy']:>12.2f}")
    for side, ms in scale.items():
        print(f"{f'(scale) a region window of a {side:,} px cube: ms':<52}{ms:>12.1f}")


if __name__ == "__main__":
    main()
