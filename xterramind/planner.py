"""Planning a run over an area: one pixel grid per UTM zone, regions aligned with the store's chunks.

An area (a bbox or GeoJSON polygon in longitude/latitude) is cut along UTM zone boundaries and the
equator; each part gets a north-up grid in its zone's CRS whose edges sit on the zone's region lattice
(multiples of the region side in metres from the zone's false origin). Regions are then the store's
chunks exactly, and two runs over neighbouring areas put their regions and tiles at the same places.
Only the regions the area touches are listed (the polygon is rasterized onto the region lattice).

Nothing per tile is ever built: a region is two axis spans made on demand, and tiles are counted per
row and column of regions, so planning a continent takes seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from affine import Affine

from .errors import InputError, OptionError
from .geo import UTM_LATITUDES, area_polygon, project, utm_crs, utm_zone, utm_zones, zone_longitudes, zone_name
from .grid import PixelGrid, Region, Tiling, column_span, region_at, region_counts, row_span

__all__ = ["Plan", "Zone", "plan_area", "plan_grid", "utm_crs", "utm_zone", "zone_name"]

DEFAULT_REGION = 256  # tokens: about 4,000 px, 400-odd tiles per region task
REPR_ZONES = 8  # zones a plan's repr lists


@dataclass(frozen=True)
class Zone:
    """One pixel grid of a plan: its name (``utm33n``), its tiling and the regions the area touches.

    A run writes each zone to its own subgroup of the store, named after the zone, so a zone is also
    the unit that one opened result covers.

    Attributes:
        name: the zone's name and store subgroup, e.g. ``"utm33n"`` (see ``zone_name``).
        tiling: the zone's pixel grid and how tiles cover it.
        region_size: the region (and store chunk) side, in tokens (``plan_area(region=)``, the verbs' ``chunks=``).
        region_indices: ``(regions, 2)`` row and column of each region the area touches, row-major (also as
            ``cells``, its old name).
        area_km2: the area's surface inside the zone.

    Example:
        >>> zone = plan_area((9.0, 45.0, 9.5, 45.5)).zones[0]
        >>> zone.name, zone.crs, len(zone.region_indices)
        ('utm32n', 'EPSG:32632', 4)
    """

    name: str
    tiling: Tiling
    region_size: int  # region side, in tokens
    region_indices: np.ndarray  # (regions, 2) row and column of each region touching the area, row-major
    area_km2: float

    @property
    def grid(self) -> PixelGrid:
        """The zone's pixel grid: CRS, transform and shape, its edges on the zone's region lattice."""
        return self.tiling.grid

    @property
    def crs(self) -> str:
        """The zone's CRS as the grid holds it, e.g. ``"EPSG:32632"``."""
        return self.grid.crs

    @property
    def shape(self) -> tuple[int, int]:
        """Regions along y and x in the zone's grid (listed or not): the store's chunk counts."""
        return region_counts(self.tiling, self.region_size)

    def region(self, row: int, col: int, cover: bool = False) -> Region:
        """The region at ``row``, ``col`` of the zone's region lattice: its pixel windows and tiles.

        Args:
            row: region row, counted from the grid's top.
            col: region column, counted from the grid's left.
            cover: list every tile overlapping the region, not only those owning its tokens (blended pixel
                outputs, such as generated images, need them).

        Example:
            >>> region = zone.region(*zone.region_indices[0])
            >>> region.tile_count
            441
        """
        return region_at(self.tiling, self.region_size, row, col, cover)

    def tile_count(self, cover: bool = False) -> int:
        """Tiles run over the listed regions (with ``cover``, tiles shared by two regions count twice).

        Counted per row and column of regions, never tile by tile, so it is quick on any area.

        Example:
            >>> zone.tile_count()
            1764
        """
        rows, cols = self.shape
        per_row = np.array([len(row_span(self.tiling, self.region_size, r, cover).tiles) for r in range(rows)])
        per_col = np.array([len(column_span(self.tiling, self.region_size, c, cover).tiles) for c in range(cols)])
        return int((per_row[self.region_indices[:, 0]] * per_col[self.region_indices[:, 1]]).sum())

    def pixel_count(self) -> int:
        """Pixels in the listed regions (clipped at the grid's far edges): what a run writes.

        Example:
            >>> zone.pixel_count()
            65028096
        """
        side = self.region_size * self.tiling.patch
        rows, cols = self.grid.height, self.grid.width
        heights = np.minimum(side, rows - self.region_indices[:, 0] * side)
        widths = np.minimum(side, cols - self.region_indices[:, 1] * side)
        return int((heights * widths).sum())

    @property
    def cells(self) -> np.ndarray:
        """The old name of ``region_indices``."""
        return self.region_indices

    def __repr__(self) -> str:  # the region_indices array can hold millions of rows: a summary instead
        height, width = self.grid.shape
        return (f"Zone({self.name!r}, {height:,} x {width:,} px, {len(self.region_indices):,} regions of {self.region_size} tokens, "
                f"{self.tile_count():,} tiles, {self.area_km2:,.0f} km2)")


@dataclass(frozen=True)
class Plan:
    """The zones of an area, each with its grid and regions: what ``xterramind.runner.run`` runs.

    Attributes:
        zones: one ``Zone`` per UTM zone and hemisphere the area covers (one for ``plan_grid``).
        resolution: metres (or the grid's units) per pixel.

    Example:
        >>> plan = plan_area((-10.0, 35.0, 30.0, 70.0))
        >>> len(plan.zones), plan.regions   # utm29n ... utm35n
        (7, 7119)
    """

    zones: tuple[Zone, ...]
    resolution: float

    @property
    def regions(self) -> int:
        """Regions to run, over every zone: the tasks a run submits (twice: a read and a compute)."""
        return sum(len(zone.region_indices) for zone in self.zones)

    @property
    def area_km2(self) -> float:
        """The area's surface, summed over its zones."""
        return sum(zone.area_km2 for zone in self.zones)

    def tile_count(self, cover: bool = False) -> int:
        """Tiles run over every zone's listed regions, as ``Zone.tile_count`` counts them.

        Example:
            >>> plan_area((4.0, 43.0, 17.0, 52.3)).tile_count()
            310464
        """
        return sum(zone.tile_count(cover) for zone in self.zones)

    def __repr__(self) -> str:  # a line per zone, up to REPR_ZONES
        zones = "".join(f"\n  {zone!r}" for zone in self.zones[:REPR_ZONES])
        zones += f"\n  ... and {len(self.zones) - REPR_ZONES} zones more" if len(self.zones) > REPR_ZONES else ""
        return (f"Plan({len(self.zones)} zone{'s' * (len(self.zones) != 1)}, {self.regions:,} regions, "
                f"{self.tile_count():,} tiles at {self.resolution:g} m per pixel){zones}")


def plan_area(area, *, resolution: float = 10.0, region: int = DEFAULT_REGION, tile_size: int = 224,
              overlap: int = 32, patch: int = 16) -> Plan:
    """Plan a run over ``area``: one grid per UTM zone and hemisphere, its regions on the zone's lattice.

    Grids are anchored on each zone's region lattice rather than on the area, so runs over neighbouring
    areas put their regions and tiles at the same places and their stores fit together.

    Args:
        area (tuple | dict | shapely.Geometry | str): ``(west, south, east, north)`` in degrees, a GeoJSON
            geometry, Feature or FeatureCollection in lon/lat, a shapely polygon, or the path of a GeoJSON file.
        resolution: metres per pixel.
        region: the region (and store chunk) side in tokens, rounded down to whole tile strides.
        tile_size: tile side in pixels (the model's 224).
        overlap: pixels shared by neighbouring tiles.
        patch: pixels per token side (TerraMind's 16).

    Returns:
        The plan: its zones, each with its grid and the regions the area touches.

    Raises:
        InputError: the area is not a polygon in lon/lat within UTM's latitudes.
        OptionError: ``resolution`` is not positive, or ``region`` holds no tile.

    Example:
        >>> plan = plan_area((4.0, 43.0, 17.0, 52.3))
        >>> plan = plan_area("alps.geojson", region=128)
    """
    if not resolution > 0:
        raise OptionError(f"resolution must be a positive number of metres, got {resolution!r}")
    shape = area_polygon(area)
    chunk = region_chunk(region, tile_size, overlap, patch)
    side = chunk * patch * resolution  # metres
    zones = []
    for name, crs, part in _zone_parts(shape):
        projected = project(part, crs)
        west, south, east, north = projected.bounds
        x0, y1 = math.floor(west / side) * side, math.ceil(north / side) * side
        columns = max(1, math.ceil((east - x0) / side))
        rows = max(1, math.ceil((y1 - south) / side))
        transform = Affine(resolution, 0, x0, 0, -resolution, y1)
        pixels = chunk * patch
        grid = PixelGrid(crs, transform, rows * pixels, columns * pixels)
        cells = _touched(projected, transform * Affine.scale(pixels), rows, columns)
        zones.append(Zone(name, Tiling(grid, tile_size, overlap, patch), chunk, cells, projected.area / 1e6))
    return Plan(tuple(zones), float(resolution))


def plan_grid(grid: PixelGrid, area=None, *, name: str | None = None, region: int = DEFAULT_REGION,
              tile_size: int = 224, overlap: int = 32, patch: int = 16) -> Plan:
    """Plan a run over an existing grid (an opened cube's), limited to ``area`` when given.

    Use it with ``xterramind.sources.CubeSource``, whose pixels must be read on the cube's own grid.

    Args:
        grid: the pixel grid to run on, e.g. ``xterramind.geo.grid_of(cube, "cube")``.
        area (tuple | dict | shapely.Geometry | str | None): a bbox, polygon or GeoJSON file in lon/lat, as
            for ``plan_area``; default the whole grid.
        name: the zone's name and store subgroup; default from the grid's CRS (``zone_name``).
        region: the region (and store chunk) side in tokens, rounded down to whole tile strides.
        tile_size: tile side in pixels.
        overlap: pixels shared by neighbouring tiles.
        patch: pixels per token side.

    Returns:
        A plan of one zone.

    Raises:
        InputError: the area does not overlap the grid.
        OptionError: ``region`` holds no tile.

    Example:
        >>> from xterramind.geo import grid_of
        >>> plan = plan_grid(grid_of(cube, "cube"), (-75.9, 37.5, -75.8, 37.6), region=64)
    """
    chunk = region_chunk(region, tile_size, overlap, patch)
    tiling = Tiling(grid, tile_size, overlap, patch)
    rows, columns = region_counts(tiling, chunk)
    lattice = grid.transform * Affine.scale(chunk * patch)
    if area is None:
        cells = np.argwhere(np.ones((rows, columns), dtype=bool))
        area_km2 = grid.height * grid.width * abs(grid.transform.a * grid.transform.e) / 1e6
    else:
        projected = project(area_polygon(area), grid.crs)
        cells = _touched(projected, lattice, rows, columns)
        area_km2 = projected.area / 1e6
    if not len(cells):
        raise InputError("the area does not overlap the cube's grid; check that it is in longitude/latitude")
    return Plan((Zone(name or zone_name(grid.crs), tiling, chunk, cells, area_km2),), abs(grid.transform.a))


def region_chunk(region: int, tile_size: int, overlap: int, patch: int) -> int:
    """The region side in tokens: whole tile strides (so regions share no tile), at least one tile."""
    stride, tile = (tile_size - overlap) // patch, tile_size // patch
    chunk = region // stride * stride if isinstance(region, int) else 0
    if chunk < tile:
        raise OptionError(f"region must be a whole number of tokens holding at least one tile after rounding down to "
                          f"whole strides of {stride}: {-(-tile // stride) * stride} or more; got {region!r}")
    return chunk


def _zone_parts(shape):
    """``(name, crs, polygon)`` for each UTM zone and hemisphere the area covers."""
    import shapely

    west, _, east, _ = shape.bounds
    for zone in utm_zones(west, east):
        low, high = zone_longitudes(zone)
        for bottom, top in ((0.0, UTM_LATITUDES[1]), (UTM_LATITUDES[0], 0.0)):
            part = shape.intersection(shapely.box(low, bottom, high, top))
            if part.area > 0:
                crs = utm_crs(zone, bottom)
                yield zone_name(crs), crs, part


def _touched(polygon, lattice: Affine, rows: int, columns: int) -> np.ndarray:
    """Row and column of every cell of a ``rows`` x ``columns`` lattice that the polygon touches."""
    from rasterio.features import rasterize

    mask = rasterize([polygon], out_shape=(rows, columns), transform=lattice, all_touched=True, dtype="uint8")
    return np.argwhere(mask.astype(bool)).astype(np.int64)
