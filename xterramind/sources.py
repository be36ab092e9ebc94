"""Where a run's pixels come from, one region window at a time.

A source answers three questions for any pixel grid of a plan, cheaply enough to ask once per region:

- ``prototype(grid)``: a lazy cube on the whole grid, never computed, whose variables, dtypes and
  attributes are those ``read`` returns (the verb is prepared on it: modalities, bands, nodata);
- ``covers(grid, window)``: may the window hold data at all? ``False`` skips the region before any read;
- ``read(grid, window)``: the window's pixels in memory, in raw units, or ``None`` when there are none.

``window`` is ``((row0, row1), (col0, col1))`` in the grid's pixels. Sources are small and picklable:
each region task carries its source, and what is big (a catalogue, an opened store) is opened by the
worker process itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import dask.array as da
import numpy as np
import xarray as xr

from .errors import InputError, MissingDependencyError, OptionError
from .facts import DATA, DataFacts
from .geo import Window, area_polygon, georeferenced, lonlat_bounds, project, window_bounds, window_grid
from .grid import PixelGrid, same_crs
from .models.registry import resolve_modality

__all__ = ["CubeSource", "Source", "StacSource", "SyntheticSource"]


class Source(Protocol):
    """What ``xterramind.runner.run`` reads pixels from: any object with these three methods.

    Write your own for data the built-in sources do not reach (a private archive, a custom mosaic). It must
    pickle small, since every region task carries it, and give the same pixels for a window whichever
    worker reads it, so that a region run twice writes the same bytes.

    Example:
        >>> class Constant:
        ...     def prototype(self, grid): ...   # a lazy cube on grid with the variables read() returns
        ...     def covers(self, grid, window): return True
        ...     def read(self, grid, window): ...   # those variables on the window, in memory
    """

    def prototype(self, grid: PixelGrid) -> xr.Dataset | xr.DataArray:
        """A lazy cube on the whole ``grid``, never computed: the variables, dtypes and attributes that
        ``read`` returns, on which the verb is prepared (modalities, bands, nodata).

        Example:
            >>> source.prototype(plan.zones[0].grid).data_vars
        """

    def covers(self, grid: PixelGrid, window: Window) -> bool:
        """Whether the window may hold data at all: ``False`` skips the region before any read, so make
        it cheap and err on ``True``.

        Args:
            grid: the zone's pixel grid.
            window: ``((row0, row1), (col0, col1))`` in the grid's pixels.

        Example:
            >>> source.covers(zone.grid, ((0, 4096), (0, 4096)))
            True
        """

    def read(self, grid: PixelGrid, window: Window) -> xr.Dataset | xr.DataArray | None:
        """The window's pixels in memory, in raw units, georeferenced on the window, or ``None`` when
        there are none (the region is then marked empty, with no model work).

        Args:
            grid: the zone's pixel grid.
            window: ``((row0, row1), (col0, col1))`` in the grid's pixels.

        Example:
            >>> pixels = source.read(zone.grid, ((0, 4096), (0, 4096)))
        """


def _prototype(facts: Iterable[DataFacts], grid: PixelGrid) -> xr.Dataset:
    """A lazy all-zero cube on ``grid``, never computed: every band of each modality's ``facts``, with its dtype
    and attributes."""
    variables = {band: (("y", "x"), da.zeros(grid.shape, chunks=grid.shape, dtype=part.dtype), part.attrs)
                 for part in facts for band in part.bands}
    return georeferenced(xr.Dataset(variables), grid)


# -- an opened cube -------------------------------------------------------------------------------------


class CubeSource:
    """An opened cube (lazy or in memory): the plan's grid must be the cube's own (``plan_grid``).

    The cube travels with every region task; a cube opened lazily from files (zarr, COGs) pickles as
    the recipe to open it, not its pixels, so open it from files rather than loading it in memory.

    Args:
        cube: a georeferenced Dataset or DataArray with one date per pixel (no ``time`` dim).

    Raises:
        InputError: ``cube`` is not an xarray object, or it has a ``time`` dimension.

    Example:
        >>> from xterramind.geo import grid_of
        >>> cube = xterramind.open_sample()
        >>> plan = plan_grid(grid_of(cube, "sample"), region=24)
        >>> report = runner.run(plan, CubeSource(cube), "embed", model, "sample.zarr")
    """

    def __init__(self, cube: xr.Dataset | xr.DataArray):
        if not isinstance(cube, (xr.Dataset, xr.DataArray)):
            raise InputError(f"the source cube must be an xarray Dataset or DataArray, got {type(cube).__name__}")
        if "time" in cube.dims:
            raise InputError("a run takes one date per pixel: select a date (cube.isel(time=0)) or make a composite "
                             "(cube.median('time')) first")
        self.cube = cube

    @property
    def grid(self) -> PixelGrid:
        """The cube's pixel grid, as the verbs read it (that of its modalities): the grid to plan on (``plan_grid``).
        A token grid (integer ids on ``(y, x)``, what ``tokenize`` writes; ``detokenize`` reads it) plans on the
        pixels it decodes to, ``patch_size`` (16) finer.

        Example:
            >>> plan = plan_grid(CubeSource(cube).grid, region=24)
        """
        from .geo import grid_of
        from .modalities import resolve

        cube = self.cube
        if isinstance(cube, xr.DataArray) and np.issubdtype(cube.dtype, np.integer) and set(cube.dims) == {"y", "x"}:
            return grid_of(cube, "the token grid").refined(int(cube.attrs.get("patch_size", 16)))
        first = resolve(cube)[0]
        return grid_of(first.data, first.spec.name)

    def prototype(self, grid: PixelGrid):
        """The cube itself (lazy): a cube is its own prototype.

        Example:
            >>> CubeSource(cube).prototype(plan.zones[0].grid) is cube
            True
        """
        return self.cube

    def covers(self, grid: PixelGrid, window: Window) -> bool:
        """Always ``True``: a cube's regions are read, and those without valid pixels skip the model.

        Example:
            >>> CubeSource(cube).covers(plan.zones[0].grid, ((0, 480), (0, 480)))
            True
        """
        return True

    def read(self, grid: PixelGrid, window: Window):
        """The cube's pixels in the window, loaded in memory.

        Example:
            >>> CubeSource(cube).read(plan.zones[0].grid, ((0, 240), (0, 240))).sizes
            Frozen({'band': 13, 'y': 240, 'x': 240})
        """
        (row0, row1), (col0, col1) = window
        # on this thread: in a worker's task the cluster's scheduler is the default one, and its threads may all be
        # region tasks waiting for these very chunks (a deadlock)
        return self.cube.isel(y=slice(row0, row1), x=slice(col0, col1)).load(scheduler="sync")


# -- synthetic pixels -----------------------------------------------------------------------------------


SYNTHETIC_ROWS = 128  # rows of a band made at once: their float64 temporaries stay in the cache (twice as fast)


class SyntheticSource:
    """Made-up but plausible pixels anywhere on Earth, for trying out and benchmarking runs without data.

    Every pixel's value is a function of its position in the grid's CRS (smooth fields plus per-pixel
    noise hashed from the pixel's global index), so any window, read by any worker, gives the same
    pixels. Outside ``land`` (a lon/lat bbox or GeoJSON geometry; default everywhere) pixels are nodata,
    the way an ocean is, so regions there are skipped without reading anything.

    Args:
        modalities: any of ``"S2L2A"``, ``"S2L1C"``, ``"S1GRD"``, ``"S1RTC"``, ``"DEM"``.
        land (tuple | dict | str | None): where pixels are valid: a lon/lat bbox, a GeoJSON geometry or
            file; default everywhere.
        seed: another seed gives other pixels (the same for every window and worker).

    Example:
        >>> source = SyntheticSource(["S2L2A", "S1GRD"], land=(9.0, 45.0, 9.2, 45.5))
        >>> runner.run(plan_area((9.0, 45.0, 9.5, 45.5)), source, "embed", model, "trial.zarr")
    """

    def __init__(self, modalities: Sequence[str] = ("S2L2A",), *, land=None, seed: int = 0):
        self.modalities = tuple(resolve_modality(name).name for name in modalities)
        unknown = [name for name in self.modalities if name not in DATA]
        if unknown or not self.modalities:
            raise OptionError(f"synthetic pixels exist for {sorted(DATA)}, not {unknown or 'nothing'}")
        self.seed = int(seed)
        self.land = None if land is None else area_polygon(land)

    def prototype(self, grid: PixelGrid) -> xr.Dataset:
        """A lazy all-zero cube on ``grid`` with the bands, dtypes and attributes ``read`` gives.

        Example:
            >>> list(SyntheticSource(["S1GRD"]).prototype(zone.grid).data_vars)
            ['VV', 'VH']
        """
        return _prototype([DATA[name] for name in self.modalities], grid)

    def covers(self, grid: PixelGrid, window: Window) -> bool:
        """Whether the window's footprint meets ``land`` (always, without ``land``).

        Example:
            >>> source.covers(zone.grid, ((0, 4096), (0, 4096)))
        """
        if self.land is None:
            return True
        import shapely

        return bool(self._land_in(grid.crs).intersects(shapely.box(*window_bounds(grid, window))))

    def read(self, grid: PixelGrid, window: Window) -> xr.Dataset | None:
        """The window's made-up pixels (nodata off ``land``), or ``None`` when it holds no land at all.

        Example:
            >>> pixels = source.read(zone.grid, ((0, 512), (0, 512)))
        """
        part = window_grid(grid, window)
        inside = self._land_mask(part)
        if inside is not None and not inside.any():
            return None
        size = abs(grid.transform.a)
        rows = np.floor(part.y_coords() / size).astype(np.int64)[:, None]  # global pixel indices
        cols = np.floor(part.x_coords() / size).astype(np.int64)[None, :]
        variables = {}
        bands = [(band, DATA[name]) for name in self.modalities for band in DATA[name].bands]
        for number, (band, facts) in enumerate(bands):
            value = np.empty(part.shape, dtype=facts.dtype)
            for start in range(0, len(rows), SYNTHETIC_ROWS):
                block = slice(start, start + SYNTHETIC_ROWS)
                value[block] = _synthetic(rows[block], cols, size, number, self.seed, facts)
            if inside is not None:
                value = np.where(inside, value, facts.nodata).astype(value.dtype)
            variables[band] = (("y", "x"), value, facts.attrs)
        return georeferenced(xr.Dataset(variables), part)

    def _land_in(self, crs: str):
        cached = getattr(self, "_projected", None)
        if cached is None or not same_crs(cached[0], crs):
            cached = (crs, project(self.land, crs))
            self._projected = cached
        return cached[1]

    def _land_mask(self, part: PixelGrid) -> np.ndarray | None:
        if self.land is None:
            return None
        from rasterio.features import geometry_mask

        return geometry_mask([self._land_in(part.crs)], out_shape=part.shape, transform=part.transform, invert=True)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_projected"}


def _synthetic(rows: np.ndarray, cols: np.ndarray, size: float, band: int, seed: int, facts) -> np.ndarray:
    """The made-up values of band number ``band`` at these global pixel rows ``(h, 1)`` and columns ``(1, w)``."""
    dtype, (low, high) = np.dtype(facts.dtype), facts.span
    phase = 0.7 * band + seed
    smooth = 0.5 + 0.3 * np.sin(cols * size / 3100.0 + phase) * np.cos(rows * size / 2300.0 - 0.5 * phase)
    value = low + (high - low) * np.clip(smooth + 0.15 * (_noise(rows, cols, band, seed) - 0.5), 0, 1)
    return value.astype(dtype) if dtype.kind == "f" else np.maximum(value, 1).astype(dtype)


def _noise(rows: np.ndarray, cols: np.ndarray, band: int, seed: int) -> np.ndarray:
    """Uniform [0, 1) per pixel from a 64-bit integer hash of its global index (splitmix64's finalizer)."""
    with np.errstate(over="ignore"):
        h = (rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (cols.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))
        h ^= np.uint64((band * 1_000_003 + seed * 7_919) & 0xFFFFFFFF)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)




# -- STAC ---------------------------------------------------------------------------------------------


class StacSource:
    """Pixels from STAC items, loaded per region window with ``xterramind.stac.load`` (same bands,
    units, offsets and cloud masks as a cube loaded whole).

    Only the items whose bbox meets a region's window are loaded for it, so a catalogue of a continent
    costs each region only its own scenes.

    Args:
        items (str | os.PathLike | list | pystac.ItemCollection): the path of a static catalogue or item
            collection (each worker reads it once), a list of items or an ``ItemCollection``, or the URL of
            a STAC API, searched per region in ``collections``.
        modalities: any of ``"S2L2A"``, ``"S2L1C"``, ``"S1GRD"``, ``"S1RTC"``, ``"DEM"``.
        collections: the collections to search a STAC API in, e.g. ``["sentinel-2-l2a", "cop-dem-glo-30"]``;
            those whose id contains ``dem`` are searched without ``time`` (a DEM has no scene date).
        time: ``"2024-06-01"`` or ``"2024-06-01/2024-08-31"``.
        composite: ``None``, or ``"median"`` for a cloud-masked median over the dates (a run takes one
            date per pixel, so a range needs it).
        mask_clouds: make S2L2A pixels that the scene classification flags (clouds, shadows) nodata.

    Raises:
        OptionError: a bad option, or an API URL without ``collections``.
        InputError: no catalogue or item collection at the path, or ``items`` are not STAC items.

    Example:
        >>> source = StacSource("https://earth-search.aws.element84.com/v1", ["S2L2A"],
        ...                     collections=["sentinel-2-l2a"], time="2024-06-01/2024-08-31", composite="median")
        >>> source = StacSource("catalog.json", ["S2L2A", "DEM"], time="2024-07-14")
    """

    def __init__(self, items, modalities: Sequence[str] = ("S2L2A",), *, collections: Sequence[str] | None = None,
                 time: str | None = None, composite: str | None = None, mask_clouds: bool = True):
        from . import stac

        self.modalities = tuple(stac.loadable(name).name for name in modalities)
        if not self.modalities:
            raise OptionError("modalities is empty; name what to load, e.g. ['S2L2A']")
        if composite not in (None, "median"):
            raise OptionError(f"composite must be None or 'median', got {composite!r}")
        if time is not None:
            stac.in_time([], time)  # checks its form now, not in a worker
        self.url = items if isinstance(items, str) and items.startswith(("http://", "https://")) else None
        if self.url and not collections:
            raise OptionError("searching a STAC API needs collections=[...], e.g. ['sentinel-2-l2a']")
        self.path = str(items) if self.url is None and isinstance(items, (str, os.PathLike)) else None
        self.items = None if self.url or self.path else stac.as_items(items)
        if self.path is not None and not Path(self.path).exists():
            raise InputError(f"no STAC catalogue or item collection at {self.path}")
        self.collections = list(collections or [])
        self.time, self.composite, self.mask_clouds = time, composite, mask_clouds

    def prototype(self, grid: PixelGrid) -> xr.Dataset:
        """A lazy all-zero cube on ``grid`` with the bands, dtypes and attributes ``xterramind.stac.load``
        gives these modalities, without reading any item.

        Example:
            >>> StacSource("catalog.json", ["S2L2A"]).prototype(zone.grid).B04.dtype
            dtype('uint16')
        """
        facts = [DATA[name] for name in self.modalities]
        return _prototype([part.composited() for part in facts] if self.composite else facts, grid)

    def covers(self, grid: PixelGrid, window: Window) -> bool:
        """Whether an item's bbox meets the window (always ``True`` for a STAC API: searching is reading).

        Example:
            >>> source.covers(zone.grid, ((0, 4096), (0, 4096)))
        """
        return self.url is not None or bool(self._items(grid, window))

    def read(self, grid: PixelGrid, window: Window) -> xr.Dataset | None:
        """The window loaded from its items with ``xterramind.stac.load`` onto the window's grid, in
        memory, or ``None`` without items.

        Raises:
            OptionError: the window has several dates and no ``composite``.

        Example:
            >>> pixels = source.read(zone.grid, ((0, 4096), (0, 4096)))
        """
        from . import stac

        items = self._items(grid, window)
        if not items:
            return None
        part = window_grid(grid, window)
        cube = stac.load(items, self.modalities, grid=part, time=self.time, composite=self.composite,
                         mask_clouds=self.mask_clouds, chunks=max(part.shape))
        if "time" in cube.dims:
            raise OptionError(f"{cube.sizes['time']} dates in {self.time}: a run takes one per pixel; pass composite='median'")
        return cube.load(scheduler="threads")  # local threads for the assets' I/O, never the cluster (see CubeSource)

    def _items(self, grid: PixelGrid, window: Window) -> list:
        from . import stac

        west, south, east, north = lonlat_bounds(grid.crs, window_bounds(grid, window))
        if self.url is not None:
            try:
                from pystac_client import Client
            except ImportError:
                raise MissingDependencyError("searching a STAC API needs pystac-client: pip install 'xterramind[stac]'") from None

            api, box = Client.open(self.url), (west, south, east, north)
            static = [c for c in self.collections if "dem" in c.lower()]  # a DEM has no scene date
            dated = [c for c in self.collections if c not in static]
            found = list(api.search(collections=dated, bbox=box, datetime=self.time).items()) if dated else []
            return found + (list(api.search(collections=static, bbox=box).items()) if static else [])
        items = _catalogue(self.path) if self.path is not None else self.items
        return [item for item in stac.select_time(items, self.time, self.modalities)
                if item.bbox is not None and item.bbox[0] < east and item.bbox[2] > west
                and item.bbox[1] < north and item.bbox[3] > south]


@functools.cache
def _catalogue(path: str) -> list:
    """A static catalogue's items, read once per process."""
    from . import stac

    return stac.as_items(path)
