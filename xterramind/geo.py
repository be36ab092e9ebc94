"""The bridge between xarray/pyproj and the pure-numpy pixel grids of ``xterramind.grid``: the grid of a
cube, georeferencing a result on a grid, CRS transforms (built once per pair), UTM zones, and areas in
longitude/latitude.

Everything that reads a CRS or coordinates off an xarray object, or projects a geometry, goes through here,
so that ``grid.py`` stays free of them and each rule is written once.
"""

from __future__ import annotations

import functools

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import xarray as xr
from affine import Affine

from .errors import InputError, MissingCRSError
from .grid import PixelGrid

__all__ = [
    "UTM_LATITUDES",
    "area_polygon",
    "georeferenced",
    "grid_of",
    "lonlat_bounds",
    "project",
    "transformer",
    "utm_crs",
    "utm_zone",
    "utm_zones",
    "window_bounds",
    "window_grid",
    "zone_longitudes",
    "zone_name",
]

UTM_LATITUDES = (-80.0, 84.0)  # where UTM is defined; polar areas need another projection

Window = tuple[tuple[int, int], tuple[int, int]]

# -- xarray <-> grid -------------------------------------------------------------------------------------


def grid_of(data: xr.DataArray, what: str) -> PixelGrid:
    """The pixel grid of a georeferenced DataArray; a clear error when it has none that TerraMind can read: no CRS,
    a rotated, mirrored (south-up, x decreasing) or uneven grid.

    Args:
        data: a DataArray with dims ``y`` and ``x`` and a CRS readable by rioxarray.
        what: how messages name it, e.g. ``"the cube"``.

    Raises:
        MissingCRSError: ``data`` has no CRS.
        InputError: the grid is too small, rotated, mirrored or uneven.

    Example:
        >>> grid_of(xterramind.open_sample(), "the sample").shape
        (480, 480)
    """
    crs = data.rio.crs
    if crs is None:
        raise MissingCRSError(
            f"{what} has no CRS; set it with .rio.write_crs('EPSG:32633') (the cube's real CRS), "
            "or open the data with rioxarray/odc-stac, which keep it"
        )
    if data.sizes["y"] < 2 or data.sizes["x"] < 2:
        raise InputError(f"{what} is {data.sizes['y']} x {data.sizes['x']} px: too small to infer its grid")
    t = data.rio.transform()  # a rotated one as written (recalculating it from the coordinates only warns)
    if t.b or t.d:
        raise InputError(f"{what} has a rotated or sheared transform {tuple(map(float, t))[:6]}; TerraMind's tiles "
                         "need a north-up grid: reproject it first, e.g. cube.rio.reproject(cube.rio.crs)")
    t = data.rio.transform(recalc=True)
    flips = {}  # a mirrored image would be embedded as it is: the model learnt north-up, west-to-east pixels
    if t.e > 0:
        flips["its y coordinates increase (south-up)"] = 'sortby("y", ascending=False)'
    if t.a < 0:
        flips["its x coordinates decrease"] = 'sortby("x")'
    if flips:
        raise InputError(f"{what} is mirrored: {' and '.join(flips)}, but TerraMind reads north-up images "
                         f"(y decreasing, x increasing). Flip it first: cube.{'.'.join(flips.values())}")
    for dim in ("y", "x"):
        _check_even(data[dim].values, dim, what)
    return PixelGrid(crs.to_wkt(), t, data.sizes["y"], data.sizes["x"])


def _check_even(coords: np.ndarray, dim: str, what: str) -> None:
    """Refuse coordinates off a regular grid: the transform would be made up from the first and last ones."""
    line = np.linspace(float(coords[0]), float(coords[-1]), coords.size)
    off = float(np.abs(coords - line).max())
    step = abs(line[1] - line[0])
    # 1e-6 of a step, plus the rounding of the coordinates' own dtype (float32 eastings are ~0.03 m coarse)
    if off > 1e-6 * step + 2 * float(np.spacing(np.abs(coords).max())):
        raise InputError(
            f"{what}: {dim} coordinates are not evenly spaced (up to {off:.3g} off a regular {step:.6g} step), so "
            f"it has no pixel grid. Resample it onto a regular grid first, e.g. cube.interp({dim}=np.linspace("
            f"{float(coords[0]):.10g}, {float(coords[-1]):.10g}, {coords.size})), or load it with rioxarray or "
            "xterramind.stac.load, which give regular grids"
        )


def georeferenced(data: xr.DataArray | xr.Dataset, grid: PixelGrid) -> xr.DataArray | xr.Dataset:
    """Attach the grid's coordinates, CRS and transform to a ``(..., y, x)`` DataArray or Dataset.

    Example:
        >>> grid = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 2, 3)
        >>> georeferenced(xr.DataArray(np.zeros((2, 3)), dims=("y", "x")), grid).x.values
        array([500005., 500015., 500025.])
    """
    data = data.assign_coords(y=grid.y_coords(), x=grid.x_coords())
    return data.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


# -- CRS transforms --------------------------------------------------------------------------------------


@functools.cache
def transformer(src_crs, dst_crs):
    """The pyproj ``Transformer`` from ``src_crs`` to ``dst_crs`` (x/east first, whatever the CRS's axis order),
    built once per pair in each process: building one takes milliseconds, a region task needs it often.

    Example:
        >>> transformer("EPSG:4326", "EPSG:32632").transform(9.0, 45.0)
        (500000.0, 4982950.400...)
    """
    from pyproj import Transformer

    return Transformer.from_crs(src_crs, dst_crs, always_xy=True)


# -- UTM zones ---------------------------------------------------------------------------------------------


def utm_zone(lon: float) -> int:
    """The UTM zone number (1 to 60) of a longitude in degrees; 180 falls in zone 60.

    Example:
        >>> utm_zone(9.2)
        32
    """
    return min(int((lon + 180) // 6) + 1, 60)


def utm_zones(west: float, east: float) -> range:
    """The UTM zone numbers from the one of ``west`` to the one of ``east``, west to east.

    Example:
        >>> list(utm_zones(11.0, 13.0))
        [32, 33]
    """
    return range(utm_zone(west), utm_zone(east) + 1)


def zone_longitudes(zone: int) -> tuple[float, float]:
    """The western and eastern longitude of a UTM zone.

    Example:
        >>> zone_longitudes(32)
        (6.0, 12.0)
    """
    west = -180.0 + 6 * (zone - 1)
    return west, west + 6


def utm_crs(zone: int, lat: float) -> str:
    """The WGS 84 / UTM CRS of a zone, north or south by the latitude's hemisphere (0 counts as north).

    Example:
        >>> utm_crs(32, 45.5)
        'EPSG:32632'
    """
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def zone_name(crs: str) -> str:
    """The name a zone of this CRS gets, and its subgroup in a run's store.

    ``utm33n`` for EPSG:32633, ``utm33s`` for EPSG:32733, else ``epsg{code}`` (or ``grid`` without a code).

    Example:
        >>> zone_name("EPSG:32633")
        'utm33n'
    """
    from pyproj import CRS

    code = CRS.from_user_input(crs).to_epsg()
    if code and 32601 <= code <= 32660:
        return f"utm{code - 32600:02d}n"
    if code and 32701 <= code <= 32760:
        return f"utm{code - 32700:02d}s"
    return f"epsg{code}" if code else "grid"


# -- areas and windows -------------------------------------------------------------------------------------


def area_polygon(area):
    """The area as a shapely (multi)polygon in lon/lat, checked.

    Args:
        area (tuple | dict | shapely.Geometry | str): ``(west, south, east, north)`` in degrees, a GeoJSON
            geometry, Feature or FeatureCollection in lon/lat, a shapely polygon, or the path of a GeoJSON file.

    Raises:
        InputError: not a polygon with an inside, or outside longitude -180..180 or UTM's latitudes.

    Example:
        >>> area_polygon((9.0, 45.0, 9.5, 45.5)).bounds
        (9.0, 45.0, 9.5, 45.5)
    """
    import shapely
    from shapely.geometry import shape

    if isinstance(area, str) or hasattr(area, "__fspath__"):
        area = _read_geojson(str(area))
    if isinstance(area, dict):
        kind = area.get("type")
        if kind == "FeatureCollection":
            area = shapely.union_all([shape(feature["geometry"]) for feature in area.get("features", [])])
        elif kind == "Feature":
            area = shape(area["geometry"])
        else:
            try:
                area = shape(area)
            except (KeyError, TypeError, AttributeError, ValueError, shapely.errors.GeometryTypeError):
                raise InputError(f"area is not a GeoJSON geometry: {str(area)[:80]}") from None
    elif isinstance(area, (tuple, list)) and len(area) == 4:
        west, south, east, north = (float(v) for v in area)
        if not west < east or not south < north:
            raise InputError(f"area (west, south, east, north) needs west < east and south < north, got {tuple(area)}; "
                             "areas across the antimeridian are planned as two runs")
        area = shapely.box(west, south, east, north)
    if not isinstance(area, shapely.Geometry):
        raise InputError(f"area must be (west, south, east, north), a GeoJSON polygon or a file of one, got {type(area).__name__}")
    if area.geom_type not in ("Polygon", "MultiPolygon") or area.is_empty or not area.area > 0:
        raise InputError(f"area must be a polygon with an inside, got a {area.geom_type}")
    west, south, east, north = area.bounds
    if west < -180 or east > 180 or south < UTM_LATITUDES[0] or north > UTM_LATITUDES[1]:
        raise InputError(
            f"area bounds {tuple(round(v, 4) for v in area.bounds)} leave longitude -180..180 or UTM's latitudes "
            f"{UTM_LATITUDES[0]:g}..{UTM_LATITUDES[1]:g}: give lon/lat degrees (polar areas need another grid: open "
            "the cube in that CRS and plan it with plan_grid)"
        )
    return shapely.make_valid(area)


def _read_geojson(path: str) -> dict:
    import json

    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read the area from {path}: {error}") from None


def project(geometry, crs: str):
    """A lon/lat geometry in ``crs``, its edges first cut into 0.05-degree steps so they bend as they should.

    Example:
        >>> project(area_polygon((9.0, 45.0, 9.5, 45.5)), "EPSG:32632").area / 1e6   # km2
        2179.4...
    """
    import shapely

    forward = transformer("EPSG:4326", crs)
    return shapely.transform(shapely.segmentize(geometry, 0.05), lambda xy: np.column_stack(forward.transform(*xy.T)))


def window_bounds(grid: PixelGrid, window: Window) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of a window ``((row0, row1), (col0, col1))``, in the grid's CRS.

    Example:
        >>> grid = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 100, 100)
        >>> window_bounds(grid, ((0, 10), (0, 20)))
        (500000.0, 4999900.0, 500200.0, 5000000.0)
    """
    (row0, row1), (col0, col1) = window
    west, north = grid.transform * (col0, row0)
    east, south = grid.transform * (col1, row1)
    return min(west, east), min(south, north), max(west, east), max(south, north)


def window_grid(grid: PixelGrid, window: Window) -> PixelGrid:
    """The pixel grid of a window ``((row0, row1), (col0, col1))`` of ``grid``.

    Example:
        >>> grid = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 100, 100)
        >>> window_grid(grid, ((10, 30), (0, 50))).shape
        (20, 50)
    """
    (row0, row1), (col0, col1) = window
    return PixelGrid(grid.crs, grid.transform * Affine.translation(col0, row0), row1 - row0, col1 - col0)


def lonlat_bounds(crs: str, bounds) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in ``crs`` -> the lon/lat box that holds it (its edges densified, so
    the box holds their bends too).

    Example:
        >>> [round(v, 3) for v in lonlat_bounds("EPSG:32632", (500000, 4982950, 510000, 4992950))]
        [9.0, 45.0, 9.127, 45.09]
    """
    return transformer(crs, "EPSG:4326").transform_bounds(*bounds, densify_pts=21)
