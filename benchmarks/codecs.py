"""Store codecs on real outputs: compression ratio, and encode and decode speed per core, for zarr v2 and v3.

    python -m benchmarks.codecs [--size 1024] [--seconds 0.3] [--formats 2 3]

The outputs are made from the bundled real Sentinel-2 scene, mirrored into a ``size`` x ``size`` px cube
(``benchmarks.engine.build_source``), by ``terramind_v1_tiny`` and ``terramind_v1_base`` on random
weights (the only weights this machine has; trained weights give other values, and peakier LULC
probabilities, which compress better): embeddings as float32, float16 and int8 (unit vectors,
sign * sqrt-companded, x 127), ``generate("LULC")`` classes (uint8) and probabilities (float32, and
uint8 = round(p * 254)), ``tokenize("S2L2A")`` tokens (int32). Each is one store chunk, as
``to_zarr`` writes a region: (embedding, y, x) on the token grid, (class, y, x) on the pixel grid.

Each codec writes the chunk into, and reads it back from, a zarr array in memory, as the store writes a
region (without zarr's empty-chunk check; zarr's own work is in every figure, "none" included): MB/s of raw
data per core, CPU seconds from ``time.process_time`` (the median of repetitions that last ``--seconds``
together, after one warm-up), so other processes on the machine do not enter the figure. Speeds of the
16 KB token chunk are zarr's overhead, not the codec's. Rows marked ``*`` are what the store writes
for that dtype (``xterramind.store.compressors``); "GDAL" says whether the GDAL of this environment
(rasterio's) decodes the codec in a v2 store (GDAL >= 3.11 reads v3 with blosc and zstd alike).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import zarr
from numcodecs import LZ4, Blosc, Zstd
from zarr.codecs import BloscCodec, ZstdCodec

from benchmarks.engine import build_source, open_source

SEED = 0

# name: (zarr v2 compressor, zarr v3 compressor); None: no compressor (v3: the BytesCodec alone)
CODECS = {
    "none": (None, None),
    "zstd-1": (Zstd(level=1), ZstdCodec(level=1)),
    "zstd-3": (Zstd(level=3), ZstdCodec(level=3)),
    "lz4": (LZ4(), "n/a"),  # zarr.codecs has no plain lz4
    "blosc-lz4-shuffle": (Blosc("lz4", 5, Blosc.SHUFFLE), BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")),
    "blosc-lz4-bitshuffle": (Blosc("lz4", 5, Blosc.BITSHUFFLE),
                             BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")),
    "blosc-zstd-1-shuffle": (Blosc("zstd", 1, Blosc.SHUFFLE), BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")),
    "blosc-zstd-1-bitshuffle": (Blosc("zstd", 1, Blosc.BITSHUFFLE),
                                BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle")),
    "blosc-zstd-3-bitshuffle": (Blosc("zstd", 3, Blosc.BITSHUFFLE),
                                BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")),
}


def outputs(size: int, folder: Path) -> dict[str, np.ndarray]:
    """The outputs to compress, by label: one region block each, as computed (no store in between)."""
    import xterramind

    cube = open_source(build_source(size, folder))
    blocks = {}
    for variant in ("tiny", "base"):
        model = xterramind.load_model(f"terramind_v1_{variant}", weights="random", seed=SEED, device="cpu",
                                      precision="fp32")
        embeddings = cube.terramind.embed(model).values
        blocks[f"{variant} embeddings f32"] = embeddings
        blocks[f"{variant} embeddings f16"] = embeddings.astype(np.float16)
        blocks[f"{variant} embeddings int8"] = companded_int8(embeddings)
    model = xterramind.load_model("terramind_v1_tiny", weights="random", seed=SEED, device="cpu", precision="fp32")
    lulc = cube.terramind.generate("LULC", model, seed=SEED).compute()
    blocks["LULC classes u8"] = lulc["LULC"].values
    probability = lulc["LULC_probability"].values
    blocks["LULC probability f32"] = probability
    blocks["LULC probability u8"] = np.round(probability * 254).astype(np.uint8)  # generate(probabilities="uint8")
    blocks["S2L2A tokens i32"] = cube.terramind.tokenize("S2L2A", model).values
    return blocks


def companded_int8(embeddings: np.ndarray) -> np.ndarray:
    """Unit vectors along the embedding axis, sign * sqrt(|v|) * 127, as int8 (AlphaEarth's convention)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=0, keepdims=True)
    return np.round(np.sign(unit) * np.sqrt(np.abs(unit)) * 127).astype(np.int8)


def cpu_seconds(call, seconds: float) -> float:
    """Median process CPU time of ``call`` over repetitions lasting ``seconds`` together (at least 3), after one."""
    call()
    times = []
    while len(times) < 3 or sum(times) < seconds:
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(block: np.ndarray, compressor, zarr_format: int, seconds: float) -> tuple[float, float, float]:
    """(ratio, encode MB/s, decode MB/s) of ``block`` written as one chunk of an in-memory zarr array."""
    written: dict = {}
    fill = np.nan if block.dtype.kind == "f" else 0  # as the store's template
    with warnings.catch_warnings():  # zarr-python: blosc in v2 metadata is fine for every reader
        warnings.simplefilter("ignore")
        array = zarr.create_array(zarr.storage.MemoryStore(written), shape=block.shape, chunks=block.shape,
                                  dtype=block.dtype, fill_value=fill, zarr_format=zarr_format,
                                  compressors=None if compressor is None else [compressor],
                                  config={"write_empty_chunks": True})  # as the store writes regions
    encode = cpu_seconds(lambda: array.__setitem__(Ellipsis, block), seconds)
    stored = sum(len(value) for key, value in written.items() if not key.split("/")[-1].startswith((".z", "zarr")))
    decode = cpu_seconds(lambda: array[...], seconds)
    assert np.array_equal(array[...], block, equal_nan=True)
    megabytes = block.nbytes / 1e6
    return block.nbytes / stored, megabytes / encode, megabytes / decode


def gdal_reads(compressor, folder: Path) -> bool:
    """Whether the GDAL of this environment (rasterio's) decodes ``compressor`` in a zarr v2 array."""
    import rasterio

    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    path = folder / f"gdal-{len(list(folder.iterdir()))}.zarr"
    array = zarr.create_array(str(path), shape=values.shape, dtype=values.dtype, zarr_format=2,
                              compressors=None if compressor is None else [compressor])
    array[...] = values
    array.attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
    try:
        with warnings.catch_warnings():  # not georeferenced: only the decoding matters here
            warnings.simplefilter("ignore")
            with rasterio.open(str(path)) as dataset:
                return bool(np.array_equal(dataset.read(1), values))
    except rasterio.errors.RasterioIOError:
        return False


def chosen(dtype: np.dtype) -> str:
    """The name in ``CODECS`` of what the store writes for ``dtype`` (its zarr v2 compressor)."""
    from xterramind.store import compressors

    config = [codec.get_config() for codec in compressors(dtype, 2)]
    return next(name for name, (v2, _) in CODECS.items() if config == ([] if v2 is None else [v2.get_config()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="cube side in px: one region of 64 tokens by default")
    parser.add_argument("--seconds", type=float, default=0.3, help="CPU seconds of repetitions per figure")
    parser.add_argument("--formats", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xterramind-bench-") as folder:
        blocks = outputs(args.size, Path(folder))
        (Path(folder) / "gdal").mkdir()
        gdal = {name: gdal_reads(v2, Path(folder) / "gdal") for name, (v2, _) in CODECS.items()}
    print(f"codecs on one region block of real outputs ({args.size} px cube, random weights); MB/s of raw data per "
          f"core (CPU time); * = the store's default for that dtype")
    header = f"{'output':<24}{'chunk':>16}{'MB':>7}  {'codec':<25}{'GDAL':>5}{'ratio':>7}"
    header += "".join(f"{f'v{f} enc':>9}{f'v{f} dec':>9}" for f in args.formats)
    print(header)
    for label, block in blocks.items():
        default = chosen(block.dtype)
        for name, (v2, v3) in CODECS.items():
            ratio, speeds = "n/a", ""
            for zarr_format in args.formats:
                compressor = v2 if zarr_format == 2 else v3
                if isinstance(compressor, str):
                    speeds += f"{'n/a':>9}{'n/a':>9}"
                    continue
                ratio, encode, decode = measure(block, compressor, zarr_format, args.seconds)
                ratio = f"{ratio:.2f}"
                speeds += f"{encode:>9.0f}{decode:>9.0f}"
            marked = name + (" *" if name == default else "")
            print(f"{label:<24}{block.shape!s:>16}{block.nbytes / 1e6:>7.1f}  {marked:<25}"
                  f"{'yes' if gdal[name] else 'no':>5}{ratio:>7}{speeds}", flush=True)

if __name__ == "__main__":
    main()
