"""Pooled embeddings per cell, written to GeoParquet part by part (never the whole table in memory).

A cell is ``cell`` x ``cell`` pixels (224 by default: one TerraMind tile), a square of tokens of the
embeddings' token grid anchored at its origin. Each cell's vector is the mean of its valid tokens; its
row carries the footprint (a polygon in the grid's CRS, clipped to the grid at the far edges), the
centre's longitude and latitude, the time, the fraction of its tokens that are valid, and the model and
weights that made it. Cells without any valid token are left out.

``quantize="int8"`` stores each vector exactly as ``embed(dtype="int8")`` stores a token's in its zarr store
(``xterramind.embed.stored``, the AlphaEarth Foundations convention): ``embedding`` holds the int8 codes ``q`` of
the unit vector, square-root companded (-127..127; -128 is nodata, which a written cell never is), and
``embeddings_scale`` (float32) the vector's length, so that the vector is ``sign(q) * (q / 127)**2 *
embeddings_scale`` here as in the store (``embed.INT8_DECODING``, one formula for every int8 product). Each part's
Parquet key-value metadata says so beside its ``geo`` key (key ``xterramind``: the formula, which column each of
its names is, the nodata code), and so does the export's ``_export.json`` (``encoding``). Error bounds, relative to
each vector's length: a component is within 7.9e-3 by construction (half a code step where a component is the whole
length; finer near zero); on the bundled sample (tiny, random weights; 192-d, cells of 16 and 32 px) at most
3.9e-3, the cosine similarity to the float32 vector at least 0.99985, and recall@10 of the exact index against
float32's 0.974 (16 px) and 0.985 (32 px).
"""

from __future__ import annotations

import functools
import json
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from .. import executor
from ..arguments import whole_number
from ..embed import SCALE, dequantize, stored
from ..errors import InputError, NoValidDataError, OptionError, StoreExistsError
from ..geo import grid_of, transformer
from ..grid import PixelGrid
from ..store import remove
from .index import check_kind
from .search import INT8_ENCODING, META, CellSet


@dataclass
class ExportReport:
    """What an export wrote; ``str(report)`` gives a one-line summary.

    Attributes:
        path: the export's folder (open it with ``xterramind.retrieval.open``).
        parts: GeoParquet files written (parts without a valid cell are left out).
        rows: cells written.
        seconds: wall time, the index included.

    Example:
        >>> report = embeddings.terramind.export("cells")
        >>> report.rows, report.parts
    """

    path: str
    parts: int
    rows: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.path}: {self.rows} cells in {self.parts} GeoParquet parts ({self.seconds:.1f} s)"


@dataclass(frozen=True)
class _Cells:
    """What every part-writing task needs: the token grid, the cell size, provenance, the encoding."""

    grid: PixelGrid
    size: int  # tokens per cell side
    quantize: str | None
    model: str
    weights: str
    folder: str


def export(embeddings: xr.DataArray, path, *, cell: int = 224, quantize: str | None = None, index: str | None = "auto",
           overwrite: bool = False, progress_bar: bool | None = None) -> ExportReport:
    """Pool ``embeddings`` (``(time,) embedding, y, x`` on a token grid) into cells and write them as
    GeoParquet parts under ``path``, then (unless ``index=None``) build a nearest-neighbour index there.

    One part per chunk (and date), written by the chunk's own task, so no table is ever whole in memory;
    ``geopandas.read_parquet(path)`` reads them all. The same as ``embeddings.terramind.export(path)``.

    Args:
        embeddings: the embeddings from ``embed``, lazy or opened from its zarr store: float32 or float16, or the
            Dataset of ``dtype="int8"`` (decoded with ``xterramind.dequantize``).
        path (str | os.PathLike): the folder to write; it must not exist unless ``overwrite``.
        cell: cell side in pixels, a multiple of the 16-px token (224: one TerraMind tile).
        quantize: ``None`` (float32 vectors) or ``"int8"``: the zarr store's int8 encoding, codes of the unit
            vector and its float32 length ``embeddings_scale``, a quarter of the size (see the module docstring).
        index: ``"auto"`` (exact up to 100,000 cells, else faiss IVF), ``"exact"``, ``"ivf"``, or ``None``
            for no index (build it later with ``CellSet.build_index``).
        overwrite: replace an existing folder at ``path``.
        progress_bar: show a progress bar; default in Jupyter or a terminal.

    Raises:
        InputError: not embeddings.
        OptionError: a bad ``cell``, ``quantize`` or ``index``.
        StoreExistsError: ``path`` exists and ``overwrite`` is not set.
        StoreError: ``overwrite`` is set, but ``path`` holds what xterramind did not write.
        NoValidDataError: no cell has a valid token.

    Example:
        >>> report = xterramind.retrieval.export(embeddings, "cells", cell=448, quantize="int8")
        >>> print(report)
    """
    started = clock.perf_counter()
    embeddings = dequantize(embeddings)  # int8 codes to vectors, float16 to float32
    size = _cell_tokens(embeddings, cell)
    if quantize not in (None, "int8"):
        raise OptionError(f"quantize must be None or 'int8', got {quantize!r}")
    if index is not None:
        check_kind(index)  # now, not after the parts are written
    folder = Path(path)
    if folder.exists():
        if not overwrite:
            raise StoreExistsError(f"{folder} exists; pass overwrite=True to replace it, or choose another path")
        remove(folder, written_by_xterramind=lambda folder: (folder / META).is_file())
    folder.mkdir(parents=True)
    grid = grid_of(embeddings.isel(embedding=0), "the embeddings")
    job = _Cells(grid, size, quantize, str(embeddings.attrs.get("model", "")), str(embeddings.attrs.get("weights", "")),
                 str(folder))
    data = _cell_aligned(embeddings, size)
    times = data["time"].values if "time" in data.dims else [None]
    jobs, names = [], []
    for t, when in enumerate(times):
        layer = data.isel(time=t) if when is not None else data
        offsets_y, offsets_x = np.cumsum((0, *layer.chunks[1])), np.cumsum((0, *layer.chunks[2]))
        for by in range(len(offsets_y) - 1):
            for bx in range(len(offsets_x) - 1):
                name = f"part-{t:04d}-{by:05d}-{bx:05d}.parquet"
                block = layer.data.blocks[:, by, bx]
                then = functools.partial(_write_part, origin=(int(offsets_y[by]), int(offsets_x[bx])), when=_iso(when),
                                         job=job, name=name)
                jobs.append(executor.Job((executor.Compute((block,)), executor.Stage(then)), name))
                names.append(name)
    counts = [done.value for done in executor.execute(jobs, f"exporting {folder.name}", progress_bar, resume=None)]
    parts = [(name, count) for name, count in zip(names, counts, strict=True) if count]
    meta = {"cell": int(cell), "cell_tokens": size, "patch_size": int(embeddings.attrs.get("patch_size", 16)),
            "crs": grid.crs, "transform": list(grid.transform)[:6], "lonlat_bounds": _lonlat_bounds(grid),
            "dim": int(embeddings.sizes["embedding"]),
            "quantize": quantize, "encoding": _encoding(quantize), "model": job.model, "weights": job.weights, "parts": parts, "rows": sum(counts)}
    (folder / META).write_text(json.dumps(meta, indent=1))
    if not meta["rows"]:
        raise NoValidDataError("no cell has a valid token: nothing to export (is the embedding all NaN?)")
    if index is not None:
        CellSet(folder).build_index(index)
    return ExportReport(str(folder), len(parts), meta["rows"], clock.perf_counter() - started)


def _cell_tokens(embeddings, cell: int) -> int:
    if not isinstance(embeddings, xr.DataArray) or "embedding" not in embeddings.dims:
        raise InputError("export takes the embeddings DataArray from embed() (dims embedding, y, x) or its zarr store")
    patch = int(embeddings.attrs.get("patch_size", 16))
    if whole_number("cell", cell) <= 0 or cell % patch:
        raise OptionError(f"cell must be a positive multiple of the {patch}-px token, got {cell}")
    return cell // patch


def _cell_aligned(embeddings: xr.DataArray, size: int) -> xr.DataArray:
    """The embeddings chunked so that every chunk holds whole cells (about the chunks it had)."""
    order = [d for d in ("time", "embedding", "y", "x") if d in embeddings.dims]
    data = embeddings.transpose(*order)
    if data.chunks is None:
        data = data.chunk()
    chunks = {}
    for dim in ("y", "x"):
        current = max(data.chunksizes[dim])
        chunks[dim] = max(size, round(current / size) * size)
    return data.chunk({"embedding": -1, **({"time": 1} if "time" in data.dims else {}), **chunks})


def _lonlat_bounds(grid: PixelGrid) -> list[float]:

    t = grid.transform
    xs = [t.c, t.c + t.a * grid.width]
    ys = [t.f, t.f + t.e * grid.height]
    lon, lat = transformer(grid.crs, "EPSG:4326").transform(
        [xs[0], xs[0], xs[1], xs[1]], [ys[0], ys[1], ys[0], ys[1]])
    return [min(lon), min(lat), max(lon), max(lat)]


def _iso(when) -> str | None:
    return None if when is None else str(np.datetime_as_string(np.datetime64(when, "s")))


def _write_part(computed: tuple[np.ndarray], *, origin: tuple[int, int], when: str | None, job: _Cells, name: str) -> int:
    """Pool one block of tokens into cells and write them as one GeoParquet file; returns the row count."""
    (block,) = computed
    import geopandas
    import shapely

    features, height, width = block.shape
    s = job.size
    rows, cols = -(-height // s), -(-width // s)
    padded = np.full((features, rows * s, cols * s), np.nan, dtype=np.float32)
    padded[:, :height, :width] = block
    cells = padded.reshape(features, rows, s, cols, s).transpose(1, 3, 0, 2, 4).reshape(rows * cols, features, s * s)
    valid = np.isfinite(cells).all(axis=1)  # (cells, tokens)
    counts = valid.sum(axis=1)
    keep = counts > 0
    if not keep.any():
        return 0
    with np.errstate(invalid="ignore"):
        vectors = np.nansum(np.where(valid[:, None, :], cells, 0), axis=2)[keep] / counts[keep, None]
    index = np.nonzero(keep)[0]
    cell_row, cell_col = index // cols + origin[0] // s, index % cols + origin[1] // s
    t = job.grid.transform
    y0, x0 = cell_row * s, cell_col * s
    y1, x1 = np.minimum(y0 + s, job.grid.height), np.minimum(x0 + s, job.grid.width)
    left, right = t.c + t.a * x0, t.c + t.a * x1
    top, bottom = t.f + t.e * y0, t.f + t.e * y1
    footprints = shapely.box(left, np.minimum(top, bottom), right, np.maximum(top, bottom))
    lon, lat = transformer(job.grid.crs, "EPSG:4326").transform((left + right) / 2, (top + bottom) / 2)
    columns = {
        "cell_id": [f"r{r}c{c}" + (f"t{when}" if when else "") for r, c in zip(cell_row, cell_col, strict=True)],
        "row": cell_row.astype(np.int64), "col": cell_col.astype(np.int64),
        "time": [when] * len(index), "lon": lon, "lat": lat,
        "valid_fraction": (counts[keep] / (s * s)).astype(np.float32),
        "model": job.model, "weights": job.weights,
    }
    vectors = vectors.astype(np.float32)
    columns |= _int8_columns(vectors) if job.quantize == "int8" else {"embedding": list(vectors)}
    table = geopandas.GeoDataFrame(columns, geometry=footprints, crs=job.grid.crs)
    _write_geoparquet(table, Path(job.folder) / name, _encoding(job.quantize))
    return len(table)


def _int8_columns(vectors: np.ndarray) -> dict[str, list | np.ndarray]:
    """The int8 columns of cells with these float32 vectors ``(cells, dim)``: ``embedding``, the codes of each unit
    vector, and ``embeddings_scale``, its length; encoded by ``embed.stored``, so that they are what a zarr store of
    ``embed(dtype="int8")`` holds for the same vectors."""
    encoded = stored(torch.from_numpy(np.ascontiguousarray(vectors))[:, :, None, None], "int8")
    return {"embedding": list(encoded["embeddings"][:, :, 0, 0].numpy()), SCALE: encoded[SCALE][:, 0, 0].numpy()}


def _encoding(quantize: str | None) -> dict:
    return INT8_ENCODING if quantize == "int8" else {"dtype": "float32"}


def _write_geoparquet(table, path: Path, encoding: dict) -> None:
    """Write one part: geopandas writes the GeoParquet ``geo`` metadata and bbox covering, then the embedding's
    encoding joins the key-value metadata beside ``geo`` (geopandas has no public way to add a key, so the part is
    written to memory uncompressed first and rewritten with the key: twice the part's memory, never more)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    table.to_parquet(buffer, write_covering_bbox=True, index=False, compression="none")
    arrow = pq.read_table(pa.BufferReader(buffer.getvalue()))
    keys = (arrow.schema.metadata or {}) | {b"xterramind": json.dumps({"embedding": encoding}).encode()}
    pq.write_table(arrow.replace_schema_metadata(keys), path, compression="snappy")
