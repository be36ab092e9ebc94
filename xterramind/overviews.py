"""Overviews (multiscales) of a complete store: coarser levels, each half the resolution of the one below, so that a
viewer draws a continent's thumbnail from a few chunks instead of reading the whole store.

Layout (github.com/zarr-conventions/multiscales, v1): level 0 stays the store's own group, untouched, so xarray,
rioxarray and GDAL open the full resolution as before. Level ``L`` (``1``, ``2``, ...) is a child group ``"L"`` of
the store's group (of the zone's group in an area run's store), itself a georeferenced xterramind store: 1-D
``x``/``y`` pixel-centre coordinates, CF ``spatial_ref``/``grid_mapping``, GDAL's ``_CRS``, the GeoZarr ``proj:``/
``spatial:`` attributes of its own grid, the same variables, dtypes, attributes and chunk sizes as level 0, and a
ledger of its own. Its grid has the origin of level 0 and ``2**L`` times its pixel size; its shape is the level
below's halved, rounded up (an odd edge's last pixel covers a half-empty 2 x 2 block), down to the first level that
fits in one chunk. When every level is complete the store's group gets the ``multiscales`` attribute (declared in
``zarr_conventions``): a layout entry per level with ``asset`` (level 0: its main variable, as GDAL names a level
that lives in the group itself; then the child group), ``derived_from`` (the level below), ``transform`` (``scale``
[2, 2] over the spatial dimensions y, x relative to ``derived_from``, the spec's reading and GDAL's;
``translation`` [0, 0]), the absolute ``spatial:transform`` and ``spatial:shape``, and ``resampling_method``.

Aggregation of each 2 x 2 block of the level below (pixels beyond an odd edge count as nodata):

- categorical variables (with ``flag_values``): the mode, ignoring the variable's ``nodata``; ties go to the
  smallest class id; a block of nodata only gives nodata. ``resampling_method`` ``"mode"``.
- floats (images, float probabilities, predictions, float32/float16 embeddings): the mean of the non-NaN values,
  NaN where there is none (computed in float32 at least, stored in the variable's dtype). ``"average"``.
- CF-packed integers (``scale_factor``, e.g. uint8 probabilities with ``_FillValue`` 255): the mean of the decoded
  values, packed again the same way. Decoding is linear, so this is ``rint(mean of the valid codes)`` (ties to even),
  exact on the codes; the ``_FillValue`` where none is valid. ``"average"``.
- int8 embeddings (``embeddings`` codes with ``embeddings_scale``): decoded (``xterramind.dequantize``), the mean
  vector taken, encoded again (``embed.stored``: unit codes, the mean's length as the scale); nodata (-128, NaN) where
  no vector is valid. ``"average"``.
- tokens have no meaningful aggregate: refused (detokenize them first); so is any other integer without
  ``flag_values`` or CF packing.

Building (``build``) runs after the store is complete, level by level, each chunk a job (``xterramind.executor``, here
or on a cluster) that reads the at most 2 x 2 chunks below it one at a time, straight from zarr, and writes its
chunk with ``store.Template.write``, which marks the level's ledger only after the data is written. Memory is one
chunk below plus one chunk of every variable, whatever the area. A rerun skips what is done: an interrupted build
loses at most the chunks in flight.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import torch
import xarray as xr
import zarr
from affine import Affine

from . import executor, geozarr, store
from .embed import INT8_NODATA, SCALE, dequantize, stored
from .errors import ForeignStoreError, OptionError, StoreError
from .geo import georeferenced, grid_of
from .grid import PixelGrid

__all__ = ["OverviewReport", "block_mean", "block_mode", "build", "int8_block_mean", "level_shapes", "open_level",
           "packed_block_mean"]

MODE, AVERAGE = "mode", "average"  # resampling_method names, as GDAL calls them
LEVEL_ATTR = "xterramind_overview_level"  # on a level's group: its level number


@dataclass
class OverviewReport:
    """What a build did: one ``store.WriteReport`` per level built or found complete, over every zone."""

    store: str
    levels: list[store.WriteReport]
    seconds: float

    def __str__(self) -> str:
        if not self.levels:
            return f"{self.store}: no overview levels: it fits in one chunk, which a viewer reads whole anyway"
        written = sum(level.written for level in self.levels)
        skipped = sum(level.skipped for level in self.levels)
        return (f"{self.store}: {len(self.levels)} overview levels, {written} chunks written, {skipped} already "
                f"complete ({self.seconds:.1f} s)")


@dataclass(frozen=True)
class Rule:
    """How one variable (two for int8 embeddings: codes and scale) is aggregated."""

    names: tuple[str, ...]
    method: str  # "mode", "mean", "packed" or "int8"
    fill: object = None  # nodata (mode), _FillValue (packed)

    @property
    def resampling(self) -> str:
        return MODE if self.method == "mode" else AVERAGE


@dataclass(frozen=True)
class LevelWork:
    """What the jobs of one level need: small and picklable."""

    below: str  # the level below's group (a folder)
    below_shape: tuple[int, int]
    below_chunks: tuple[int, int]
    dims: dict  # variable -> its dims
    rules: tuple[Rule, ...]
    template: store.Template


# -- the aggregations, on (..., h, w) arrays -------------------------------------------------------------------


def _quads(values: np.ndarray, pad) -> np.ndarray:
    """``(..., ceil(h / 2), ceil(w / 2), 4)``: each 2 x 2 block's values, an odd far edge padded with ``pad``."""
    height, width = values.shape[-2:]
    widths = [(0, 0)] * (values.ndim - 2) + [(0, height % 2), (0, width % 2)]
    values = np.pad(values, widths, constant_values=pad)
    *lead, height, width = values.shape
    blocks = values.reshape(*lead, height // 2, 2, width // 2, 2)
    return np.moveaxis(blocks, -3, -2).reshape(*lead, height // 2, width // 2, 4)


def block_mode(classes: np.ndarray, nodata=None) -> np.ndarray:
    """The most frequent class of each 2 x 2 block, ignoring ``nodata``; ties to the smallest class, ``nodata`` where
    a block has no other value.

    Example:
        >>> block_mode(np.array([[3, 3, 0, 0], [1, 1, 0, 5]], np.uint8), nodata=0)
        array([[1, 5]], dtype=uint8)
    """
    valid = _quads(np.ones(classes.shape, bool), False)
    quads = _quads(classes, 0 if nodata is None else nodata)
    if nodata is not None:
        valid &= quads != nodata
    same = (quads[..., :, None] == quads[..., None, :]) & valid[..., None, :]
    counts = same.sum(-1).astype(np.int64)
    largest = np.iinfo(classes.dtype).max
    key = np.where(valid, counts * (2**33) + (largest - quads.astype(np.int64)), -1)  # more votes, then smaller id
    best = np.take_along_axis(quads, key.argmax(-1)[..., None], -1)[..., 0]
    return best if nodata is None else np.where(valid.any(-1), best, nodata).astype(classes.dtype)


def block_mean(values: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block's non-NaN values, NaN where it has none, in the values' dtype.

    Example:
        >>> block_mean(np.array([[1.0, np.nan, np.nan], [3.0, np.nan, np.nan]], np.float32))
        array([[ 2., nan]], dtype=float32)
    """
    wide = np.result_type(values.dtype, np.float32)
    quads = _quads(values.astype(wide, copy=False), np.nan)
    valid = ~np.isnan(quads)
    count = valid.sum(-1)
    total = np.where(valid, quads, 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(values.dtype)


def packed_block_mean(codes: np.ndarray, fill) -> np.ndarray:
    """The mean of each 2 x 2 block of CF-packed codes' decoded values, packed again: ``rint`` of the valid codes'
    mean (decoding is linear), ``fill`` where none is valid.

    Example:
        >>> packed_block_mean(np.array([[254, 255], [0, 255]], np.uint8), 255)
        array([[127]], dtype=uint8)
    """
    quads = _quads(codes, fill)
    valid = quads != fill
    count = valid.sum(-1)
    mean = np.rint(np.where(valid, quads, 0).sum(-1, dtype=np.int64) / np.maximum(count, 1))
    return np.where(count > 0, mean, fill).astype(codes.dtype)


def int8_block_mean(codes: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean vector of each 2 x 2 block of int8 embeddings ``(..., embedding, h, w)`` with their lengths
    ``(..., h, w)``: decoded, averaged over the valid vectors, encoded again as ``embed.stored`` does.

    Example:
        >>> codes, scale = int8_block_mean(np.full((2, 2, 2), 90, np.int8), np.ones((2, 2), np.float32))
        >>> codes[:, 0, 0].tolist(), round(float(scale[0, 0]), 3)
        ([90, 90], 0.707)
    """
    lead = tuple(f"lead{i}" for i in range(codes.ndim - 3))
    pair = xr.Dataset({"embeddings": ((*lead, "embedding", "y", "x"), codes), SCALE: ((*lead, "y", "x"), scale)})
    mean = block_mean(dequantize(pair).values)
    missing = np.isnan(mean).any(axis=-3)
    vectors = torch.from_numpy(np.nan_to_num(mean).reshape(-1, *mean.shape[-3:]))
    out = stored(vectors, "int8")
    new_codes = out["embeddings"].numpy().reshape(mean.shape)
    new_scale = out[SCALE].numpy().reshape(missing.shape)
    return (np.where(missing[..., None, :, :], np.int8(INT8_NODATA), new_codes),
            np.where(missing, np.float32(np.nan), new_scale).astype(scale.dtype))


AGGREGATIONS = {
    "mode": lambda arrays, fill: [block_mode(arrays[0], fill)],
    "mean": lambda arrays, fill: [block_mean(arrays[0])],
    "packed": lambda arrays, fill: [packed_block_mean(arrays[0], fill)],
    "int8": lambda arrays, fill: list(int8_block_mean(*arrays)),
}


def rules(dataset: xr.Dataset) -> tuple[Rule, ...]:
    """How each variable of a store (opened raw: ``mask_and_scale=False``) is aggregated; refused when it has no
    meaningful aggregate.

    Raises:
        OptionError: tokens, or another integer variable without ``flag_values`` or CF packing.
    """
    found = []
    variables = dataset.data_vars
    int8 = "embeddings" in variables and variables["embeddings"].dtype == np.int8 and SCALE in variables
    for name, var in variables.items():
        attrs = var.attrs
        if int8 and name in ("embeddings", SCALE):
            if name == "embeddings":
                found.append(Rule((name, SCALE), "int8"))
        elif "flag_values" in attrs:
            found.append(Rule((name,), "mode", attrs.get("nodata")))
        elif "scale_factor" in attrs and var.dtype.kind in "iu":
            found.append(Rule((name,), "packed", _packed_fill(name, attrs)))
        elif var.dtype.kind == "f":
            found.append(Rule((name,), "mean"))
        elif attrs.get("product") == "tokens":
            raise OptionError(f"{name} holds token ids, which have no meaningful aggregate: overviews of tokens "
                              "would be made-up ids. Detokenize them first (tokens.terramind.detokenize(...)) and "
                              "build overviews of the pixels")
        else:
            raise OptionError(f"{name} ({var.dtype}) has no documented aggregate: overviews take categorical "
                              "variables (with flag_values), floats and CF-packed integers; leave it out of the store")
    return tuple(found)


def _packed_fill(name: str, attrs: dict):
    fill = attrs.get("_FillValue", attrs.get("nodata"))
    if fill is None:
        raise StoreError(f"{name} is CF-packed without a _FillValue or nodata, so its missing values cannot be told "
                         "apart; write it with one (as generate(probabilities='uint8') does)")
    return fill


# -- levels -----------------------------------------------------------------------------------------------------


def level_shapes(shape: tuple[int, int], chunks: tuple[int, int]) -> list[tuple[int, int]]:
    """The ``(height, width)`` of each overview level of a grid of ``shape`` in chunks of ``chunks``: each the one
    below halved (rounded up), down to the first that fits in one chunk. None for a grid of one chunk.

    Example:
        >>> level_shapes((8192, 8192), (512, 512))
        [(4096, 4096), (2048, 2048), (1024, 1024), (512, 512)]
        >>> level_shapes((300, 129), (64, 64))
        [(150, 65), (75, 33), (38, 17)]
    """
    shapes, (height, width) = [], shape
    while height > chunks[0] or width > chunks[1]:
        height, width = -(-height // 2), -(-width // 2)
        shapes.append((height, width))
    return shapes


def _level_grid(base: PixelGrid, level: int, shape: tuple[int, int]) -> PixelGrid:
    return PixelGrid(base.crs, base.transform * Affine.scale(2**level), *shape)


def _template(base: xr.Dataset, grid: PixelGrid, level: int, chunks: tuple[int, int], methods: dict) -> xr.Dataset:
    """The lazy placeholder of a level (never computed): level 0's variables and attributes on the level's grid
    (``store.prepare`` leaves out level 0's own GeoZarr metadata, and writes the level's)."""
    sizes = {"y": grid.height, "x": grid.width}
    variables = {}
    for name, var in base.data_vars.items():
        shape = tuple(sizes.get(d, n) for d, n in zip(var.dims, var.shape, strict=True))
        split = tuple({"y": chunks[0], "x": chunks[1]}.get(d, c if d == "time" else n)
                      for d, n, c in zip(var.dims, var.shape, var.encoding["chunks"], strict=True))
        variables[name] = xr.Variable(var.dims, da.zeros(shape, dtype=var.dtype, chunks=split),
                                      var.attrs | {"resampling_method": methods[name]})
    coords = {name: coord.variable for name, coord in base.coords.items()
              if not {"y", "x"} & set(coord.dims) and name != "spatial_ref"}
    dataset = xr.Dataset(variables, coords=coords, attrs=base.attrs | {LEVEL_ATTR: level})
    return georeferenced(dataset, grid)


def _pieces(start: int, stop: int, chunk: int) -> list[tuple[int, int]]:
    """The chunks of the level below in ``[start, stop)``, read one at a time; the whole range where chunks are odd
    (a 2 x 2 block would straddle two)."""
    if chunk % 2:
        return [(start, stop)]
    return [(s, min(s + chunk, stop)) for s in range(start, stop, chunk)]


def _index(dims, time: slice | None, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[slice, ...]:
    where = {"time": time or slice(None), "y": slice(*rows), "x": slice(*cols)}
    return tuple(where.get(d, slice(None)) for d in dims)


def build_chunk(work: LevelWork, index) -> bool:
    """Aggregate the chunks below one chunk of a level and write it (then its ledger mark); whether it holds data."""
    slices = work.template.layout.slices(index)
    rows = (2 * slices["y"].start, min(2 * slices["y"].stop, work.below_shape[0]))
    cols = (2 * slices["x"].start, min(2 * slices["x"].stop, work.below_shape[1]))
    below = zarr.open_group(work.below, mode="r")
    blocks = {}
    for rule in work.rules:
        for piece_rows in _pieces(*rows, work.below_chunks[0]):
            for piece_cols in _pieces(*cols, work.below_chunks[1]):
                arrays = [below[name][_index(work.dims[name], slices.get("time"), piece_rows, piece_cols)]
                          for name in rule.names]
                row, col = (piece_rows[0] - rows[0]) // 2, (piece_cols[0] - cols[0]) // 2
                for name, part in zip(rule.names, AGGREGATIONS[rule.method](arrays, rule.fill), strict=True):
                    if name not in blocks:
                        height, width = slices["y"].stop - slices["y"].start, slices["x"].stop - slices["x"].start
                        blocks[name] = np.empty((*part.shape[:-2], height, width), part.dtype)
                    blocks[name][..., row : row + part.shape[-2], col : col + part.shape[-1]] = part
    return work.template.write([blocks[name] for name in work.template.layout.variables], index)


# -- building ---------------------------------------------------------------------------------------------------


def build(path: str | os.PathLike, *, zone: str | None = None, progress: bool | None = None, client=None
          ) -> OverviewReport:
    """Build the overviews of a complete store (see the module docstring), or finish an interrupted build.

    An area run's store gets them zone by zone (every zone, or the one named by ``zone``). Safe to call again: the
    levels and chunks already built are skipped, so ``to_zarr(..., overviews=True)`` and ``xterramind overviews``
    can call it after every write.

    Args:
        path: a store written by xterramind (``to_zarr``, ``xterramind run``).
        zone: the zone of an area run's store to build (default: every zone).
        progress: a progress bar per level (default: where interactive, as ``to_zarr``).
        client (distributed.Client | None): where the chunks are built (default: the active client, else here).

    Raises:
        StoreError: nothing at ``path``, a zone that is not there, or a store whose write is not complete.
        ForeignStoreError: not a store written by xterramind.
        OptionError: a variable without a meaningful aggregate (tokens).

    Example:
        >>> lulc.terramind.to_zarr("lulc.zarr")
        >>> print(xterramind.overviews.build("lulc.zarr"))
        >>> coarse = xterramind.overviews.open_level("lulc.zarr", 3)
    """
    started = time.perf_counter()
    root = Path(path).expanduser()
    levels = []
    for group in _stores(root, zone):
        levels += _build_store(root, group, progress, client)
    return OverviewReport(str(root), levels, time.perf_counter() - started)


def open_level(path: str | os.PathLike, level: int, *, zone: str | None = None) -> xr.Dataset:
    """Open one overview level of a store as a georeferenced, lazy Dataset (``level`` 0: the store itself).

    Raises:
        StoreError: the store has no such level (build its overviews first).

    Example:
        >>> open_level("lulc.zarr", 2).rio.resolution()
        (40.0, -40.0)
    """
    group = "/".join(str(p) for p in (zone, level or None) if p is not None) or None
    if store.group_attrs(Path(path).expanduser(), group) is None:
        raise StoreError(f"{path} has no overview level {level}{f' in zone {zone}' if zone else ''}: build them "
                         f"with xterramind.overviews.build({str(path)!r})")
    return xr.open_zarr(str(path), group=group, decode_coords="all")


def _stores(root: Path, zone: str | None) -> list[str | None]:
    """The groups holding a store: ``[None]`` for a single store, the zones of an area run's."""
    attrs = store.group_attrs(root)
    if attrs is None:
        raise StoreError(f"there is no store at {root}" if not root.exists() else
                         f"{root} is not a zarr store written by xterramind")
    zones = sorted(attrs.get(store.RUN_ATTR, {}).get("zones", {}))
    if not zones:
        if zone is not None:
            raise StoreError(f"{root} is a single store, not an area run: it has no zones; leave out zone=")
        return [None]
    if zone is not None and zone not in zones:
        raise StoreError(f"{root} is an area run with zones {zones}; name one of them with zone=, or leave zone= out "
                         "to build every zone")
    return [zone] if zone is not None else zones


def _build_store(root: Path, group: str | None, progress, client) -> list[store.WriteReport]:
    """Build every level of the store in ``group`` (None: the root), then declare them in ``multiscales``."""
    path = root / group if group else root
    if not store.is_store(path):
        raise ForeignStoreError(f"{path} is not a store written by xterramind: overviews are built for its stores")
    if group is None:  # a zone of an area run may hold regions outside the area, never written (see the report)
        _check_complete(path)
    base = xr.open_zarr(str(path), decode_coords="all", mask_and_scale=False)
    found = rules(base)
    methods = {name: rule.resampling for rule in found for name in rule.names}
    first = next(iter(base.data_vars.values()))
    chunks = tuple(first.encoding["chunks"][first.dims.index(d)] for d in ("y", "x"))
    grid = grid_of(first, f"the store {path}")
    zarr_format = zarr.open_group(str(path), mode="r").metadata.zarr_format
    reports, below, below_shape = [], path, grid.shape
    for level, shape in enumerate(level_shapes(grid.shape, chunks), start=1):
        template = store.prepare(_template(base, _level_grid(grid, level, shape), level, chunks, methods),
                                 path / str(level), resume=True, zarr_format=zarr_format)
        work = LevelWork(str(below), below_shape, chunks, {n: v.dims for n, v in base.data_vars.items()}, found,
                         template)
        reports.append(_build_level(work, f"{group + '/' if group else ''}{level}", progress, client))
        below, below_shape = path / str(level), shape
    if reports:
        _declare(path, base, grid, len(reports), found)
        store.consolidate(path)
        if group:
            store.consolidate(root)  # the run store's metadata holds its zones'
    return reports


def _check_complete(path: Path) -> None:
    ledger = zarr.open_array(str(path), path=f"{store.LEDGER}/done", mode="r")[...]
    if not ledger.all():
        raise StoreError(f"{path} is not complete: {int((ledger == 0).sum())} of {ledger.size} regions are still to "
                         "write. Finish the write first (run the same to_zarr call again), then build its overviews")


def _build_level(work: LevelWork, name: str, progress, client) -> store.WriteReport:
    started = time.perf_counter()
    layout, ledger = work.template.layout, work.template.ledger()
    todo = [index for index in layout.block_indices() if not ledger[index]]
    jobs = [executor.Job((executor.Stage(functools.partial(build_chunk, work, index)),), f"overview-{name}-"
                         + "-".join(map(str, index))) for index in todo]
    done = executor.execute(jobs, f"overviews {name}", progress, client=client,
                            resume="run the same build again to resume")
    empty = [outcome.value for outcome in done].count(False)
    total = len(layout.block_indices())
    return store.WriteReport(work.template.path, total, len(todo), total - len(todo), empty,
                             time.perf_counter() - started)


def _declare(path: Path, base: xr.Dataset, grid: PixelGrid, levels: int, found: tuple[Rule, ...]) -> None:
    """Write the ``multiscales`` attribute on the store's group, declared beside its other conventions."""
    main = base.attrs.get(store.RESULT_VARIABLE) or found[0].names[0]
    method = next(rule.resampling for rule in found if main in rule.names)
    layout = []
    height, width = grid.shape
    for level in range(levels + 1):
        entry = {"asset": str(level) if level else main,
                 "transform": {"scale": [float(2 ** min(level, 1))] * 2, "translation": [0.0, 0.0]},
                 "spatial:transform": [float(v) for v in tuple(grid.transform * Affine.scale(2**level))[:6]],
                 "spatial:shape": [height, width]}
        if level:
            entry |= {"derived_from": str(level - 1) if level > 1 else main, "resampling_method": method}
        layout.append(entry)
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    node = zarr.open_group(str(path), mode="r+")
    declaration = geozarr.conventions("multiscales")
    ours = {c["uuid"] for c in declaration}
    kept = [c for c in node.attrs.get("zarr_conventions") or [] if not (isinstance(c, dict) and c.get("uuid") in ours)]
    node.attrs.update({"zarr_conventions": kept + declaration,
                       "multiscales": {"layout": layout, "resampling_method": method}})
