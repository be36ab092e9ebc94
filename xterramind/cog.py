"""Cloud-Optimized GeoTIFF export: a result, or a store, as tiled COGs with internal overviews, for GIS teams.

A GeoTIFF holds one dtype, so every variable gets a COG of its own: ``write`` exports a result (lazy, or a store
opened with ``xterramind.open``) to one file per variable; ``write_tiles`` cuts a store (every zone of an area
run) or a large result into COGs of ``tile`` x ``tile`` px, the zone and the tile's row and column in each name.

Streaming, memory flat in area: each file is first written into a temporary uncompressed tiled GeoTIFF one block
of the result at a time (its dask chunks: a verb's regions, a store's chunks; the variables of one file set
computed together, so a region's model work runs once), under a bounded GDAL cache; GDAL then builds the
overviews from that file and its COG driver copies it, compressed, to the final path (renamed into place only
once complete). Uncompressed, because a block that does not fill whole 512 px GeoTIFF tiles is written twice,
and a compressed GeoTIFF would append a second copy of those tiles; so a file needs its uncompressed size, and
a third more for the overviews, of temporary disk next to it.

What reads back with rasterio/GDAL: the CRS and transform; nodata (the variable's ``nodata`` attribute, NaN for
floats: LULC 0, predicted classes their dtype's largest value, int8 embeddings -128); the band descriptions
(``LULC``; the ``band_names`` of an image; ``class_names`` of probabilities; else ``embedding_000``, ...); LULC's
colour table; the result's attributes (model, weights, product, ...) as dataset tags, with ``variable`` and, for
class maps, ``class_names`` (a JSON list by class id). Stored values as stored:

- CF-packed uint8 probabilities keep their codes, nodata 255, with the band scale and offset set, so GDAL-aware
  readers (``rasterio``'s ``scales``, QGIS, ``gdal_translate -unscale``) decode them.
- int8 embeddings keep their codes (nodata -128), with the decoding ``embed.INT8_DECODING`` in the tag
  ``decoding`` and, in the tag ``embeddings_scale``, the name of the float32 COG of the vectors' lengths written
  next to them.
- float16 embeddings are written as float32: GDAL reads float16 GeoTIFFs, but few other readers do.

Memory (``python -m benchmarks.cog``, synthetic LULC stores in 1,920 px chunks, 2 cores): the export adds 40, 65,
68 and 72 MB of peak RSS to an idle process for stores of 1,920², 3,840², 7,680² and 15,360² px (up to GDAL's
64 MB cache, then flat), at 9-25 Mpx/s.

Compression: DEFLATE (read by every GeoTIFF reader) with the floating-point predictor for floats and the
horizontal one for integers but class maps; ``compress="zstd"`` is smaller and faster where readers have it.
Overviews: nearest for codes, the most common class for class maps, the average for values.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from . import catalog
from . import progress as progress_bars
from .arguments import names, whole_number
from .embed import INT8_DECODING, INT8_NODATA, SCALE
from .errors import InputError, MissingCRSError, OptionError, StoreError, StoreExistsError
from .facts import LULC_CLASSES, LULC_COLOURS, LULC_NODATA
from .geo import grid_of, zone_name
from .grid import PixelGrid
from .store import PACKING, RESULT_VARIABLE, RUN_ATTR, group_attrs, open_result, packed

__all__ = ["BLOCK", "COMPRESSIONS", "TILE", "lulc_colour_table", "overview_factors", "write", "write_tiles"]

BLOCK = 512
"""GeoTIFF tile side in px (smaller for rasters of many bands: at most 64 MB a tile across bands)."""
TILE = 8192
"""``write_tiles``' default file side in px, as AlphaEarth Foundations' exports."""
COMPRESSIONS = ("deflate", "zstd")
"""The COG compressions offered: DEFLATE (every reader) and ZSTD."""
MAIN_VARIABLES = ("LULC", "classes", "prediction", "embeddings")  # a result's main variable, the first found
GDAL_CACHE_MB = 64  # GDAL's block cache while writing (its default, 5 % of RAM, would grow with the file)
BLOCK_BYTES = 64 * 2**20  # at most this per GeoTIFF tile across bands (the COG driver holds tiles pixel-interleaved)
UNTAGGED = {"grid_mapping", "_CRS", "nodata", "_FillValue", "missing_value", "scale_factor", "add_offset",
            "band_names", "class_names", "decoding"}  # attributes said by the GeoTIFF itself, or below

Window2 = tuple[tuple[int, int], tuple[int, int]]  # ((row0, row1), (col0, col1)) of a variable's grid


@dataclass(frozen=True)
class Layer:
    """One variable as a GeoTIFF: its data (bands, y, x) lazily, how its values are stored, and its metadata."""

    name: str
    data: xr.DataArray  # (band, y, x), values as the result holds them
    dtype: np.dtype  # as the GeoTIFF stores them
    nodata: float | None
    descriptions: tuple[str, ...]
    tags: dict[str, str]
    resampling: Resampling
    packing: dict = field(default_factory=dict)  # CF encoding to apply first: packed values a store decoded to floats
    scale: float | None = None  # the band scale and offset of CF-packed codes
    offset: float | None = None
    colours: bool = False  # LULC's colour table

    def window(self, window: Window2):
        """The (lazy) values of a window."""
        (row0, row1), (col0, col1) = window
        return self.data.data[:, row0:row1, col0:col1]

    def stored(self, values: np.ndarray) -> np.ndarray:
        """Computed values as the GeoTIFF stores them: packed again where a store decoded them, cast."""
        if self.packing:
            values = packed(values, self.packing)
        return np.asarray(values).astype(self.dtype, copy=False)


def write(result: xr.DataArray | xr.Dataset, path: str | os.PathLike, *, variable: str | Sequence[str] | None = None,
          overviews="auto", compress: str = "deflate", overwrite: bool = False, stac: bool = True,
          progress: bool | None = None) -> list[Path]:
    """Export a result to Cloud-Optimized GeoTIFFs, one per variable, block by block (see the module docstring).

    Args:
        result: a georeferenced xterramind result, lazy (``cube.terramind.generate("LULC", model)``) or read
            from a store (``xterramind.open(path)``, ``xterramind.open(path, zone="utm32n")``).
        path: the file of the first variable; any other goes next to it as ``{stem}_{variable}.tif``. A time
            series gets one set per date, ``{stem}_{YYYY-MM-DD}.tif`` (the date also in the ``date`` tag).
        variable: a name or a list of names (default: the main one: ``LULC``, ``classes``, ``prediction``,
            ``embeddings`` or the first target). int8 embeddings bring their ``embeddings_scale`` COG along.
        overviews: ``"auto"`` (halvings until the picture fits one GeoTIFF tile), a list of increasing factors
            such as ``[2, 4, 8]``, or ``None``.
        compress: ``"deflate"`` (default) or ``"zstd"``.
        overwrite: replace files already there (never a folder).
        stac: save the files' STAC Item next to the first (``<its name>.json``: ``xterramind.catalog.cog_item``).
        progress: a progress bar (default: in Jupyter and terminals).

    Returns:
        The paths written, the first variable's first.

    Raises:
        MissingCRSError: the result has no CRS.
        OptionError: an unknown variable, option or value.
        InputError: int8 embeddings without their lengths.
        StoreExistsError: a file is at one of the paths and ``overwrite`` is False.

    Example:
        >>> lulc = cube.terramind.generate("LULC", model)
        >>> xterramind.cog.write(lulc, "lulc.tif")                          # [PosixPath('lulc.tif')]
        >>> xterramind.cog.write(xterramind.open("int8.zarr"), "emb.tif")   # emb.tif, emb_embeddings_scale.tif
    """
    path = Path(path).expanduser()
    suffix = path.suffix or ".tif"
    dated = [(date, one, path if date is None else path.with_name(f"{path.stem}_{date}{suffix}"))
             for date, one in _by_date(result)]  # a time series: one file set per date, the date in its names
    plans = []
    for date, one, first in dated:
        layers = _layers(one, variable)
        paths = [first] + [first.with_name(f"{first.stem}_{layer.name}{suffix}") for layer in layers[1:]]
        plans.append((layers, paths, {"date": date} if date else {}))
    _check_paths([p for _, paths, _ in plans for p in paths], overwrite)
    written = []
    for layers, paths, tags in plans:
        grid = grid_of(layers[0].data, "the result")
        written += _export(layers, paths, grid, ((0, grid.height), (0, grid.width)), overviews=overviews,
                           compress=compress, progress=progress, description=f"COG {paths[0].name}",
                           extra_tags=tags, stac=stac)
    return written


def write_tiles(source, folder: str | os.PathLike, *, tile: int = TILE, variable: str | Sequence[str] | None = None,
                zone: str | None = None, overviews="auto", compress: str = "deflate", skip_empty: bool = True,
                overwrite: bool = False, stac: bool = True, progress: bool | None = None) -> list[Path]:
    """Export a store (every zone of an area run) or a large result as COGs of ``tile`` x ``tile`` px.

    Each zone is cut into tiles from its grid's top-left corner (those on the right and bottom edges are
    smaller); each tile's file, ``{zone}_{variable}_r{row}_c{col}.tif`` in ``folder``, streams as ``write``'s
    do and carries its zone and position in its tags too. A tile is read once per file set; where a store's
    chunk (or a lazy result's region) straddles tiles, it is read (computed) once per tile: a ``tile`` that is
    a multiple of the chunks avoids it.

    Args:
        source: a store's path (a store, or an area run's of many zones), or a result as ``write`` takes.
        folder: where the files go (made if missing).
        tile: the files' side in px of the variable's grid (default 8192).
        variable, overviews, compress, overwrite, stac, progress: as for ``write`` (each tile gets its Item).
        zone: only this zone of an area run (default: every zone).
        skip_empty: write no file for a tile without a valid pixel (outside the area, at sea, ...).

    Returns:
        The paths written, zone by zone, tile row by row.

    Raises:
        StoreError: no store at ``source``, or no zone ``zone`` in it.
        StoreExistsError: a tile's file exists and ``overwrite`` is False.

    Example:
        >>> xterramind.cog.write_tiles("europe.zarr", "europe-cogs")     # utm32n_LULC_r000_c000.tif, ...
        >>> xterramind.cog.write_tiles("lulc.zarr", "tiles", tile=2048)
    """
    tile = whole_number("tile", tile, 16)
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"{folder} is a file; write_tiles needs a folder: pick another path")
    plans = []
    for zone_label, zone_result in _zones(source, zone):
        for date, result in _by_date(zone_result):
            layers = _layers(result, variable)
            grid = grid_of(layers[0].data, f"zone {zone_label}")
            for (row, col), window in _tiles(grid, tile):
                position = f"{date}_r{row:03d}_c{col:03d}" if date else f"r{row:03d}_c{col:03d}"
                paths = [folder / f"{zone_label}_{layer.name}_{position}.tif" for layer in layers]
                tags = {"zone": zone_label, "tile_row": str(row), "tile_col": str(col), "tile_size": str(tile),
                        "tile_origin_px": json.dumps([window[0][0], window[1][0]])} | ({"date": date} if date else {})
                plans.append((layers, paths, grid, window, tags))
    _check_paths([path for plan in plans for path in plan[1]], overwrite, made=True)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with progress_bars.bar(len(plans), f"COG tiles in {folder.name}", progress) as bar:  # one bar, not one a tile
        for layers, paths, grid, window, tags in plans:
            written += _export(layers, paths, grid, window, overviews=overviews, compress=compress, progress=False,
                               description=paths[0].name, extra_tags=tags, skip_empty=skip_empty, stac=stac)
            bar.update(1)
    return written


# -- what is written ---------------------------------------------------------------------------------------


def _by_date(result) -> list[tuple[str | None, xr.DataArray | xr.Dataset]]:
    """``(date, result of that date)`` for each date of a time series (a GeoTIFF holds one picture), the date as
    ``YYYY-MM-DD`` (with the time of day where two share a day; the index without dates); ``[(None, result)]``
    without a time dimension."""
    if "time" not in result.dims:
        return [(None, result)]
    values = result["time"].values if "time" in result.coords else np.arange(result.sizes["time"])
    labels = [str(np.datetime_as_string(v, unit="D")) if np.issubdtype(values.dtype, np.datetime64) else str(v)
              for v in values]
    if len(set(labels)) < len(labels):
        labels = [str(np.datetime_as_string(v, unit="s")).replace(":", "") for v in values]
    return [(label, result.isel(time=index)) for index, label in enumerate(labels)]


def _zones(source, zone: str | None) -> list[tuple[str, xr.DataArray | xr.Dataset]]:
    """``(zone name, result)`` of each zone of ``source``: a store's path (one zone per subgroup of an area run)
    or a result, its zone named after its CRS."""
    if isinstance(source, xr.DataArray | xr.Dataset):
        if source.rio.crs is None:
            return [("grid", source)]  # refused with the fix by ``_layers``
        found = zone_name(source.rio.crs.to_wkt())
        if zone not in (None, found):
            raise OptionError(f"the result is in zone {found}, not {zone!r}: leave out zone=")
        return [(found, source)]
    path = Path(source).expanduser()
    if not path.exists():
        raise StoreError(f"there is no store at {path}: give a store's path or a result")
    zones = sorted((group_attrs(path) or {}).get(RUN_ATTR, {}).get("zones", {}))
    if not zones:  # a single store
        result = open_result(path, zone=zone)
        return [(zone_name(result.rio.crs.to_wkt()) if result.rio.crs else "grid", result)]
    if zone is not None and zone not in zones:
        raise StoreError(f"{path} has zones {zones}, not {zone!r}: name one of them with zone=, or leave it out")
    return [(name, open_result(path, zone=name)) for name in zones if zone in (None, name)]


def _layers(result, variable) -> list[Layer]:
    """The layers to write: the chosen variables (int8 embeddings with their lengths), checked, in order."""
    if not isinstance(result, xr.DataArray | xr.Dataset):
        raise InputError(f"expected an xarray result (or xterramind.open(path)), got {type(result).__name__}")
    if result.rio.crs is None:
        raise MissingCRSError("the result has no CRS, and a GeoTIFF needs one: set it with "
                              ".rio.write_crs('EPSG:32633') (its real CRS); xterramind results carry one")
    dataset = _as_dataset(result)
    chosen = names("variable", variable, "LULC") or [_main_variable(dataset)]
    unknown = [name for name in chosen if name not in dataset.data_vars]
    if unknown:
        raise OptionError(f"the result has no variable {unknown}; name one of {sorted(dataset.data_vars)} with "
                          "variable=")
    if "embeddings" in chosen and dataset["embeddings"].dtype == np.int8:
        if SCALE not in dataset.data_vars:
            raise InputError(f"int8 embeddings need their {SCALE}: pass the Dataset embed(dtype='int8') gives (or "
                             "xterramind.open reads from its store), not its embeddings variable alone")
        chosen = list(dict.fromkeys([*chosen, SCALE]))
    return [_layer(dataset, name) for name in dict.fromkeys(chosen)]


def _as_dataset(result) -> xr.Dataset:
    if isinstance(result, xr.Dataset):
        return result
    name = result.name or result.attrs.get("product") or "values"
    dataset = result.to_dataset(name=name)
    dataset.attrs = dict(result.attrs) | {RESULT_VARIABLE: name}
    return dataset


def _main_variable(dataset: xr.Dataset) -> str:
    """The variable a result is about: its only one, the one it was written from, LULC, classes, ..., its first
    target; else the caller must say."""
    found = list(dataset.data_vars)
    wanted = [dataset.attrs.get(RESULT_VARIABLE), *MAIN_VARIABLES, *dataset.attrs.get("targets", [])]
    main = next((name for name in wanted if name in found), found[0] if len(found) == 1 else None)
    if main is None:
        raise OptionError(f"the result has variables {sorted(found)}; name the ones to write with variable=, e.g. "
                          f"variable={sorted(found)[0]!r}")
    return main


def _layer(dataset: xr.Dataset, name: str) -> Layer:
    var = dataset[name]
    if not {"y", "x"} <= set(var.dims) or var.ndim > 3:
        raise InputError(f"{name} has dims {var.dims}; a GeoTIFF takes (y, x) or (band, y, x)")
    leading = [d for d in var.dims if d not in ("y", "x")]
    data = var.transpose(*leading, "y", "x")
    data = data.expand_dims("band") if not leading else data
    if data.chunks is None:  # in memory: windows of whole GeoTIFF tiles
        data = data.chunk({"y": 4 * BLOCK, "x": 4 * BLOCK})
    attrs = dataset.attrs | var.attrs
    packing = {k: v for k, v in var.encoding.items() if k in PACKING} if "scale_factor" in var.encoding else {}
    dtype = _stored_dtype(var, packing)
    classes = _class_names(name, attrs)
    tags = {key: _tag(value) for key, value in attrs.items() if key not in UNTAGGED and key != RESULT_VARIABLE}
    tags |= {"variable": name} | ({"class_names": json.dumps(classes)} if classes else {})
    if name == "embeddings" and dtype == np.int8:
        tags |= {"decoding": INT8_DECODING, "decoding_nodata": f"q = {INT8_NODATA}: no data"}
    scale = packing.get("scale_factor", attrs.get("scale_factor"))
    offset = packing.get("add_offset", attrs.get("add_offset", 0.0 if scale is not None else None))
    return Layer(name, data, dtype, _nodata(attrs, packing, dtype), _descriptions(name, data, attrs), tags,
                 _resampling(attrs, dtype, scale), packing, None if scale is None else float(scale),
                 None if offset is None else float(offset), colours=name == "LULC")


def _stored_dtype(var: xr.DataArray, packing: dict) -> np.dtype:
    """A GeoTIFF's dtype for ``var``: its CF-packed dtype, float32 for float16, uint8 for booleans, else its own."""
    dtype = np.dtype(packing.get("dtype", var.dtype))
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(np.uint8) if dtype.kind == "b" else dtype


def _nodata(attrs: dict, packing: dict, dtype: np.dtype) -> float | None:
    value = packing.get("_FillValue", attrs.get("nodata", attrs.get("_FillValue")))
    if value is None:
        return math.nan if dtype.kind == "f" else None
    return float(value)


def _class_names(name: str, attrs: dict) -> list[str] | None:
    """A class map's class names by class id: LULC's, or its ``flag_meanings``."""
    if name == "LULC":
        return list(LULC_CLASSES)
    if "flag_values" in attrs and "flag_meanings" in attrs:
        return str(attrs["flag_meanings"]).split()
    return None


def _descriptions(name: str, data: xr.DataArray, attrs: dict) -> tuple[str, ...]:
    """Band descriptions: the variable's name for one band, else its band or class names, else numbered."""
    bands, dim = data.shape[0], data.dims[0]
    for key in ("band_names", "class_names"):
        listed = attrs.get(key)
        if listed is not None and len(listed) == bands and dim != "band":
            return tuple(str(v) for v in listed)
    if dim == "band":  # a (y, x) variable
        return (name,)
    width = max(3, len(str(bands - 1)))
    return tuple(f"{dim}_{i:0{width}d}" for i in range(bands))


def _resampling(attrs: dict, dtype: np.dtype, scale) -> Resampling:
    """How overviews summarize: the most common class of a class map, nearest codes, the average of values."""
    if "flag_values" in attrs:
        return Resampling.mode
    if dtype.kind == "f" or scale is not None:
        return Resampling.average
    return Resampling.nearest


def _tag(value) -> str:
    """An attribute as a GeoTIFF tag: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


# -- where it goes -----------------------------------------------------------------------------------------


def _check_paths(paths: list[Path], overwrite: bool, *, made: bool = False) -> None:
    """Refuse, before any work, a path that is a folder, holds a file (unless ``overwrite``), lies in a folder that
    does not exist (unless it will be ``made``), or is given twice."""
    for path in paths:
        if path.is_dir():
            raise StoreExistsError(f"{path} is a folder; a COG is a file: pick another path")
        if path.exists() and not overwrite:
            raise StoreExistsError(f"{path} exists; pass overwrite=True to replace it, or pick another path")
        if not made and not path.parent.exists():
            raise StoreError(f"the folder {path.parent} does not exist: make it first, or pick another path")
    if len(set(paths)) < len(paths):
        raise OptionError(f"two variables would go to one file in {[str(p) for p in paths]}: name each once")


def _tiles(grid: PixelGrid, tile: int):
    """``((row, col), window)`` of each ``tile`` px tile of a grid, row by row."""
    for row in range(math.ceil(grid.height / tile)):
        for col in range(math.ceil(grid.width / tile)):
            yield (row, col), ((row * tile, min(grid.height, (row + 1) * tile)),
                               (col * tile, min(grid.width, (col + 1) * tile)))


def _blocks(data: xr.DataArray, window: Window2) -> list[Window2]:
    """The windows of ``data``'s dask chunks inside ``window``, row by row: each computed once."""
    def edges(chunks, start, stop):
        bounds = np.concatenate([[0], np.cumsum(chunks)])
        inside = bounds[(bounds > start) & (bounds < stop)]
        cuts = [start, *(int(b) for b in inside), stop]
        return list(itertools.pairwise(cuts))

    (row0, row1), (col0, col1) = window
    rows, cols = edges(data.chunks[1], row0, row1), edges(data.chunks[2], col0, col1)
    return [(r, c) for r in rows for c in cols]


def overview_factors(overviews, height: int, width: int, block: int = BLOCK) -> list[int]:
    """The overview factors of a ``height`` x ``width`` picture: ``"auto"`` halvings until it fits one ``block``,
    a list of increasing whole factors of at least 2 as given, or none for ``None``.

    Example:
        >>> overview_factors("auto", 3000, 2000)
        [2, 4, 8]
    """
    if overviews is None or overviews is False:
        return []
    if overviews == "auto":
        factors, factor = [], 2
        while max(height, width) / (factor // 2) > block:
            factors.append(factor)
            factor *= 2
        return factors
    try:
        factors = [whole_number("overviews", f, 2) for f in overviews]
    except (TypeError, OptionError):
        raise OptionError(f"overviews must be 'auto', a list of increasing factors such as [2, 4, 8], or None, got "
                          f"{overviews!r}") from None
    if factors != sorted(set(factors)):
        raise OptionError(f"overviews must increase, e.g. [2, 4, 8], got {overviews!r}")
    return factors


def _block_size(bands: int, dtype: np.dtype) -> int:
    """The GeoTIFF tile side: 512 px, halved (to 128 at least) while a tile of every band holds more than 64 MB."""
    side = BLOCK
    while side > 128 and side * side * bands * dtype.itemsize > BLOCK_BYTES:
        side //= 2
    return side


def _export(layers: list[Layer], paths: list[Path], grid: PixelGrid, window: Window2, *, overviews, compress: str,
            progress, description: str, extra_tags: dict | None = None, skip_empty: bool = False,
            stac: bool = False) -> list[Path]:
    """Write the layers' ``window`` to ``paths``: block by block into temporary GeoTIFFs, then as COGs (and their
    STAC Item with ``stac``). With ``skip_empty``, nothing for a window whose first layer has no valid pixel."""
    if compress not in COMPRESSIONS:
        raise OptionError(f"compress must be one of {list(COMPRESSIONS)}, got {compress!r}")
    (row0, row1), (col0, col1) = window
    height, width = row1 - row0, col1 - col0
    transform = grid.transform * Affine.translation(col0, row0)
    blocks = _blocks(layers[0].data, window)
    tags = dict(extra_tags or {})
    file_of = {layer.name: path.name for layer, path in zip(layers, paths, strict=True)}
    tags_of = {}
    if file_of.get("embeddings") and SCALE in file_of:  # int8 codes: each file names the other
        tags_of = {SCALE: {**tags, "scales_of": file_of["embeddings"]}, "embeddings": {**tags, SCALE: file_of[SCALE]}}
    with tempfile.TemporaryDirectory(prefix=".xterramind-cog-", dir=paths[0].parent) as scratch, \
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        temporary = [Path(scratch) / f"{i}.tif" for i in range(len(layers))]
        opened = [_open_temporary(layer, temp, grid.crs, transform, height, width, tags_of.get(layer.name, tags))
                  for layer, temp in zip(layers, temporary, strict=True)]
        try:
            valid = _stream(layers, opened, blocks, (row0, col0), description, progress)
        finally:
            for dst in opened:
                dst.close()
        if skip_empty and not valid:
            return []
        for layer, temp in zip(layers, temporary, strict=True):
            _build_overviews(temp, layer, overview_factors(overviews, height, width,
                                                           _block_size(layer.data.shape[0], layer.dtype)))
        for layer, temp, path in zip(layers, temporary, paths, strict=True):
            _copy_as_cog(temp, path, layer, compress, Path(scratch))
    if stac:
        catalog.write_cog_item(paths)
    return paths


def _open_temporary(layer: Layer, path: Path, crs: str, transform: Affine, height: int, width: int, tags: dict):
    """The temporary tiled GeoTIFF of one layer, open for writing, with all its metadata."""
    bands = layer.data.shape[0]
    side = _block_size(bands, layer.dtype)
    dst = rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=layer.dtype,
                        crs=crs, transform=transform, nodata=layer.nodata, tiled=True, blockxsize=side,
                        blockysize=side, interleave="band", BIGTIFF="IF_SAFER", SPARSE_OK="TRUE")
    dst.update_tags(**(layer.tags | tags))
    for band, text in enumerate(layer.descriptions, start=1):
        dst.set_band_description(band, text)
    if layer.scale is not None:
        dst.scales, dst.offsets = (layer.scale,) * bands, (layer.offset,) * bands
    if layer.colours:
        dst.write_colormap(1, lulc_colour_table())
    return dst


def lulc_colour_table() -> dict[int, tuple[int, int, int, int]]:
    """LULC's colour table as a GeoTIFF holds it: class id -> RGBA, no data transparent (as GDAL reads it back).

    Example:
        >>> lulc_colour_table()[1]
        (65, 155, 223, 255)
    """
    table = {i: (*(int(v) for v in rgb), 255) for i, rgb in enumerate(LULC_COLOURS)}
    return table | {LULC_NODATA: (0, 0, 0, 0)}


def _stream(layers: list[Layer], opened: list, blocks: list[Window2], origin: tuple[int, int], description: str,
            progress) -> bool:
    """Compute the blocks one at a time (each layer's together, so shared work runs once) and write them; whether
    the first layer had a valid pixel."""
    valid = False
    with progress_bars.bar(len(blocks), description, progress) as bar:
        for window in blocks:
            values = dask.compute(*(layer.window(window) for layer in layers))
            (r0, r1), (c0, c1) = window
            place = Window(c0 - origin[1], r0 - origin[0], c1 - c0, r1 - r0)
            for index, (layer, dst, block) in enumerate(zip(layers, opened, values, strict=True)):
                stored = layer.stored(block)
                valid = valid or (index == 0 and _has_valid(stored, layer.nodata))
                dst.write(stored, window=place)
            bar.update(1)
    return valid


def _has_valid(values: np.ndarray, nodata) -> bool:
    if nodata is None:
        return True
    if math.isnan(nodata):
        return bool(np.isfinite(values).any())
    return bool((values != nodata).any())


def _build_overviews(path: Path, layer: Layer, factors: list[int]) -> None:
    """GDAL's overviews inside the temporary GeoTIFF, once it is whole on disk (its colour table too)."""
    if factors:
        with rasterio.open(path, "r+") as dst:
            dst.build_overviews(factors, layer.resampling)


def _copy_as_cog(temporary: Path, path: Path, layer: Layer, compress: str, scratch: Path) -> None:
    """GDAL's COG driver: the temporary GeoTIFF, its overviews as built, compressed; renamed into place whole."""
    with rasterio.open(temporary) as src:
        overviews = "FORCE_USE_EXISTING" if src.overviews(1) else "NONE"
        side = src.block_shapes[0][0]
    predictor = ("FLOATING_POINT" if layer.dtype.kind == "f" else "NO" if layer.resampling == Resampling.mode
                 else "STANDARD")
    partial = scratch / f"{path.name}.partial"
    rasterio.shutil.copy(temporary, partial, driver="COG", COMPRESS=compress.upper(), PREDICTOR=predictor,
                         BLOCKSIZE=str(side), OVERVIEWS=overviews, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    if path.exists():  # overwrite=True, checked before any work
        path.unlink()
    shutil.move(partial, path)
