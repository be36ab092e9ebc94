"""COG export of LULC stores: seconds and peak memory by store size, to show memory flat in area.

    python -m benchmarks.cog [--sizes 1920 3840 7680] [--chunk 1920] [--tile 3840]

Each store is a synthetic LULC class map (uint8, LULC's attributes, smooth class patches), written with
``.terramind.to_zarr`` from a lazy dask array in ``--chunk`` px chunks. Each export runs in a fresh process, whose
peak RSS (``VmHWM``, see ``peak_rss_mb``) is reported beside that of a process that only imports xterramind and opens
the store: the export's own share is the difference. ``cog.write`` makes one COG of the whole store;
``cog.write_tiles`` cuts it into ``--tile`` px COGs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.engine import in_fresh_process, peak_rss_kib

LULC_ATTRS = {"long_name": "land use / land cover class", "flag_values": list(range(10)), "nodata": 0,
              "flag_meanings": "no_data water trees flooded_vegetation crops built_area bare_ground snow_ice clouds "
                               "rangeland"}


def peak_rss_mb() -> float:
    return peak_rss_kib() / 1024


def synthetic_store(size: int, chunk: int, path: Path) -> Path:
    """A ``size`` x ``size`` px LULC store: patches of one class, 64 to 200 px across, in ``chunk`` px chunks."""
    import dask.array as da
    import xarray as xr
    from affine import Affine

    from xterramind.geo import georeferenced
    from xterramind.grid import PixelGrid

    def classes(block_info=None):
        (row0, row1), (col0, col1) = block_info[None]["array-location"]
        rows, cols = np.mgrid[row0:row1, col0:col1]
        return (1 + (rows // 97 * 7 + cols // 131 * 3 + (rows + cols) // 200) % 9).astype(np.uint8)

    data = da.map_blocks(classes, dtype=np.uint8, chunks=da.core.normalize_chunks(chunk, (size, size)))
    attrs = {"model": "synthetic", "weights": "random", "product": "generation", "targets": ["LULC"]}
    grid = PixelGrid("EPSG:32632", Affine(10, 0, 400_000, 0, -10, 5_000_000), size, size)
    result = georeferenced(xr.Dataset({"LULC": xr.DataArray(data, dims=("y", "x"), attrs=LULC_ATTRS | attrs)},
                                      attrs=attrs), grid)
    result.terramind.to_zarr(path, progress=False)
    return path


def child(kind: str, store: Path, out: Path, tile: int) -> dict:
    """One export (or ``open``: only opening the store) in this fresh process: seconds, peak MB, files, bytes."""
    import xterramind
    from xterramind import cog

    start = time.perf_counter()
    result = xterramind.open(store)
    if kind == "write":
        paths = cog.write(result, out / "lulc.tif", progress=False)
    elif kind == "tiles":
        paths = cog.write_tiles(store, out / "tiles", tile=tile, progress=False)
    else:
        paths = []
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb(), "files": len(paths),
            "mb": sum(path.stat().st_size for path in paths) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1920, 3840, 7680])
    parser.add_argument("--chunk", type=int, default=1920, help="the store's chunk side in px (a region's)")
    parser.add_argument("--tile", type=int, default=3840, help="write_tiles' tile side in px")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, store, out, tile = args.child
        print(json.dumps(child(kind, Path(store), Path(out), int(tile))))
        return
    print(f"LULC store -> COG (DEFLATE, auto overviews), {args.chunk} px chunks, fresh process each, "
          f"{os.cpu_count()} cores")
    print(f"{'size (px)':>11}{'what':>24}{'files':>7}{'s':>8}{'Mpx/s':>8}{'peak MB':>9}{'export MB':>11}{'COG MB':>8}")
    with tempfile.TemporaryDirectory(prefix="xterramind-cog-") as folder:
        for size in args.sizes:
            store = synthetic_store(size, args.chunk, Path(folder) / f"lulc-{size}.zarr")
            base = in_fresh_process("benchmarks.cog", "open", store, folder, args.tile)
            for kind, what in (("write", "cog.write"), ("tiles", f"cog.write_tiles({args.tile})")):
                out = Path(folder) / f"{kind}-{size}"
                out.mkdir()
                run = in_fresh_process("benchmarks.cog", kind, store, out, args.tile)
                print(f"{f'{size:,}²':>11}{what:>24}{run['files']:>7}{run['seconds']:>8.1f}"
                      f"{size * size / 1e6 / run['seconds']:>8.1f}{run['peak_mb']:>9.0f}"
                      f"{run['peak_mb'] - base['peak_mb']:>11.0f}{run['mb']:>8.1f}")


if __name__ == "__main__":
    main()
