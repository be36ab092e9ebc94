"""The xarray/pyproj <-> grid bridge: the grid of a cube (north-up, regular, with a CRS, or a clear error),
georeferencing on a grid, CRS transforms built once, UTM zones, areas and windows."""

import json
import warnings

import numpy as np
import pytest
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from xterramind import geo
from xterramind.errors import InputError, MissingCRSError
from xterramind.geo import (
    area_polygon,
    georeferenced,
    grid_of,
    lonlat_bounds,
    project,
    transformer,
    utm_crs,
    utm_zone,
    utm_zones,
    window_bounds,
    window_grid,
    zone_longitudes,
    zone_name,
)
from xterramind.grid import PixelGrid

GRID = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 300, 400)


def test_the_grid_of_a_cube_and_a_result_georeferenced_on_it_agree(cube):
    grid = grid_of(cube, "the sample")
    assert grid.shape == (480, 480) and grid.transform == cube.rio.transform() and cube.rio.crs.to_wkt() == grid.crs
    back = georeferenced(xr.DataArray(np.zeros(grid.shape), dims=("y", "x")), grid)
    assert grid_of(back, "back") == grid
    np.testing.assert_array_equal(back.x.values, cube.x.values)
    np.testing.assert_array_equal(back.y.values, cube.y.values)
    dataset = georeferenced(xr.Dataset({"a": (("y", "x"), np.zeros(grid.shape))}), grid)
    assert dataset.rio.crs == cube.rio.crs and dataset.rio.transform() == grid.transform


def test_a_cube_without_a_crs_is_a_missing_crs_error(cube):
    with pytest.raises(MissingCRSError, match=r"the cube has no CRS.*rio.write_crs"):
        grid_of(cube.drop_vars("spatial_ref"), "the cube")
    with pytest.raises(InputError, match="too small to infer its grid"):
        grid_of(cube.isel(x=slice(0, 1)), "the cube")


def test_transformers_are_built_once_per_pair_and_take_x_first(monkeypatch):
    built = []
    original = Transformer.from_crs

    def counted(*args, **kwargs):
        built.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(Transformer, "from_crs", counted)
    transformer.cache_clear()
    try:
        first = transformer("EPSG:4326", "EPSG:32632")
        assert transformer("EPSG:4326", "EPSG:32632") is first and len(built) == 1
        x, y = first.transform(9.0, 45.0)  # lon first, though EPSG:4326 lists latitude first
        assert x == pytest.approx(500_000.0) and y == pytest.approx(4_982_950.4, abs=1)
        assert transformer("EPSG:32632", "EPSG:4326").transform(x, y) == pytest.approx((9.0, 45.0))
        assert len(built) == 2 and all(kwargs == {"always_xy": True} for _, kwargs in built)
    finally:
        transformer.cache_clear()  # no transformer of the counting stub stays cached for other tests


@pytest.mark.parametrize(("lon", "zone"), [(-180.0, 1), (-174.01, 1), (-174.0, 2), (9.2, 32), (12.0, 33), (179.9, 60),
                                           (180.0, 60)])
def test_utm_zones_of_longitudes(lon, zone):
    assert utm_zone(lon) == zone
    west, east = zone_longitudes(zone)
    assert east - west == 6 and (west <= lon < east or lon == 180.0 == east)


def test_utm_crs_and_zone_names():
    assert list(utm_zones(11.0, 13.0)) == [32, 33] and list(utm_zones(9.0, 9.5)) == [32]
    assert utm_crs(32, 45.5) == "EPSG:32632" and utm_crs(33, -0.1) == "EPSG:32733" and utm_crs(33, 0.0) == "EPSG:32633"
    assert [zone_name(crs) for crs in ("EPSG:32633", "EPSG:32733", "EPSG:3857", GRID.crs)] == \
           ["utm33n", "utm33s", "epsg3857", "utm33n"]
    assert zone_name("+proj=utm +zone=33 +ellps=intl +units=m +no_defs") == "epsg23033"  # ED50 / UTM 33N
    assert zone_name("+proj=tmerc +lon_0=13.1 +k=1 +x_0=500000 +ellps=WGS84 +units=m +no_defs") == "grid"  # no code


def test_windows_and_their_bounds():
    part = window_grid(GRID, ((10, 30), (100, 150)))
    assert part.shape == (20, 50) and part.crs == GRID.crs
    assert part.transform == Affine(10, 0, 501_000, 0, -10, 4_999_900)
    assert window_bounds(GRID, ((10, 30), (100, 150))) == (501_000, 4_999_700, 501_500, 4_999_900)
    assert window_bounds(part, ((0, 20), (0, 50))) == window_bounds(GRID, ((10, 30), (100, 150)))
    west, south, east, north = lonlat_bounds(GRID.crs, window_bounds(GRID, ((0, 300), (0, 400))))
    corners = transformer(GRID.crs, "EPSG:4326").transform([500_000, 504_000], [5_000_000, 4_997_000])
    assert west <= min(corners[0]) and east >= max(corners[0]) and south <= min(corners[1]) and north >= max(corners[1])
    assert east - west < 0.06 and north - south < 0.03


def test_areas_in_every_form_and_projected(tmp_path):
    triangle = {"type": "Polygon", "coordinates": [[[9.0, 45.0], [9.4, 45.0], [9.0, 45.3], [9.0, 45.0]]]}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": triangle}]}))
    shape = area_polygon(triangle)
    for same in (path, str(path), {"type": "Feature", "properties": {}, "geometry": triangle}, shapely.geometry.shape(triangle)):
        assert area_polygon(same).equals(shape)
    assert area_polygon((9.0, 45.0, 9.4, 45.3)).equals(shapely.box(9.0, 45.0, 9.4, 45.3))
    projected = project(shapely.box(9.0, 45.0, 9.5, 45.5), "EPSG:32632")
    assert len(shapely.get_coordinates(projected)) > 20  # edges cut into steps, so they bend
    assert projected.area / 1e6 == pytest.approx(2179.4, rel=1e-3)
    assert project(shape, "EPSG:32632").bounds[0] == pytest.approx(500_000, abs=1)


@pytest.mark.parametrize(("area", "message"), [
    ((10.0, 45.0, 9.0, 46.0), "west < east"),
    ((9.0, 85.0, 10.0, 86.0), "UTM's latitudes"),
    ((500000.0, 4000000.0, 510000.0, 4010000.0), "lon/lat degrees"),
    ({"type": "Point", "coordinates": [9.0, 45.0]}, "polygon with an inside"),
    ({"type": "Nonsense"}, "not a GeoJSON geometry"),
    (42, "must be (west, south, east, north)"),
    ("/no/such/area.geojson", "cannot read the area"),
])
def test_bad_areas_get_clear_errors(area, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        area_polygon(area)


def test_the_bridge_is_one_module_the_others_import():
    """planner, sources, stac and modalities use geo's functions, not copies of their own."""
    from xterramind import modalities, planner, sources

    assert modalities.grid_of is geo.grid_of
    assert (planner.utm_zone, planner.utm_crs, planner.zone_name, planner.project, planner.area_polygon) == \
           (geo.utm_zone, geo.utm_crs, geo.zone_name, geo.project, geo.area_polygon)
    assert (sources.window_bounds, sources.window_grid) == (geo.window_bounds, geo.window_grid)


# -- the grid must be north-up and regular ---------------------------------------------------------------------


def _small(cube, side=160):
    return cube.isel(y=slice(0, side), x=slice(0, side))


MIRRORED = {  # name: (the mirroring, the fix the message must give, that fix)
    "south-up": (lambda c: c.isel(y=slice(None, None, -1)), r'south-up.*cube.sortby\("y", ascending=False\)',
                 lambda c: c.sortby("y", ascending=False)),
    "x decreasing": (lambda c: c.isel(x=slice(None, None, -1)), r'x coordinates decrease.*cube.sortby\("x"\)',
                     lambda c: c.sortby("x")),
    "both": (lambda c: c.isel(y=slice(None, None, -1), x=slice(None, None, -1)),
             r'cube.sortby\("y", ascending=False\).sortby\("x"\)', lambda c: c.sortby("y", ascending=False).sortby("x")),
}


@pytest.mark.parametrize("case", MIRRORED, ids=list(MIRRORED))
def test_a_mirrored_grid_is_refused_with_the_flip_that_fixes_it(cube, micro, case):
    mirror, fix, flip = MIRRORED[case]
    small = _small(cube)
    mirrored = mirror(small)
    for call in (lambda c, **o: c.terramind.embed(micro, tile_size=160, **o),
                 lambda c, **o: c.terramind.generate("LULC", micro, tile_size=160, timesteps=1, **o)):
        for given in (mirrored, mirrored.chunk({"y": 80, "x": 80})):  # lazily too: the coordinates tell at once
            with pytest.raises(InputError, match=fix):
                call(given)
            with pytest.raises(InputError, match=fix):  # not a matter of taste: check_input=False does not let it pass
                call(given, check_input=False)
    np.testing.assert_array_equal(flip(mirrored).terramind.embed(micro, tile_size=160).values,
                                  small.terramind.embed(micro, tile_size=160).values)


@pytest.mark.parametrize("transform", [(10, 1, 0, 0, -10, 0), (10, 0, 0, 1, -10, 0), (8.66, 5, 0, 5, -8.66, 0)])
def test_a_rotated_or_sheared_transform_is_refused_with_the_reprojection(cube, micro, transform):
    small = _small(cube)
    a, b, _, d, e, _ = transform
    t = small.rio.transform()
    rotated = small.rio.write_transform(Affine(a, b, t.c, d, e, t.f))
    with pytest.raises(InputError, match=r"rotated or sheared.*north-up.*cube.rio.reproject\(cube.rio.crs\)"):
        rotated.terramind.embed(micro, check_input=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rioxarray notes it cannot recalculate a rotated transform
        fixed = rotated.rio.reproject(rotated.rio.crs)
    assert fixed.rio.transform().b == fixed.rio.transform().d == 0
    assert np.isfinite(fixed.terramind.embed(micro, tile_size=160).values).any()


def _jitter(values, size):
    return values + np.random.default_rng(5).uniform(-size, size, values.size)


UNEVEN = {
    "x steps by 15 m once": ("x", lambda x: np.where(np.arange(x.size) >= 100, x + 5, x)),
    "x jittered by 1 m": ("x", lambda x: _jitter(x, 1.0)),
    "y jittered by 1 m": ("y", lambda y: _jitter(y, 1.0)),
    "y jittered by 1 cm": ("y", lambda y: _jitter(y, 0.01)),
    "y irregular but monotonic": ("y", lambda y: y[0] - np.cumsum(np.linspace(9, 11, y.size)) + 9),
}


@pytest.mark.parametrize("case", UNEVEN, ids=list(UNEVEN))
def test_uneven_coordinates_are_refused_not_made_into_a_grid(cube, micro, case):
    dim, change = UNEVEN[case]
    uneven = _small(cube).assign_coords({dim: change(cube[dim].values[:160])})
    for given in (uneven, uneven.chunk({"y": 80, "x": 80}), uneven.to_dataset(dim="band")):
        with pytest.raises(InputError, match=rf"{dim} coordinates are not evenly spaced.*regular grid.*"
                                             rf"cube.interp\({dim}=np.linspace\("):
            given.terramind.embed(micro, tile_size=160, check_input=False)
    coords = uneven[dim].values
    fixed = uneven.interp({dim: np.linspace(coords[0], coords[-1], coords.size)})  # the fix it names works
    assert fixed.terramind.embed(micro, tile_size=160).sizes["x"] == 10


def test_coordinates_regular_up_to_their_float_rounding_pass_and_a_cm_off_does_not(cube, micro):
    """float32 northings are only 0.5 m fine at 4,000 km: that is rounding, not an uneven grid; in float64 it is."""
    small = _small(cube)
    expected = small.terramind.embed(micro, tile_size=160).values
    centres = np.arange(160) + 0.5
    for dtype in ("float64", "float32"):  # a 10.003 m step, as a reprojection gives
        moved = small.assign_coords(x=(442980.37 + 10.003 * centres).astype(dtype),
                                    y=(4171980.37 - 10.003 * centres).astype(dtype))
        assert (np.ptp(np.diff(moved.y.values)) > 0.1) == (dtype == "float32")  # rounded unevenly
        np.testing.assert_allclose(moved.terramind.embed(micro, tile_size=160).values, expected, atol=1e-5)
    off = small.assign_coords(y=4171980.37 - 10.003 * centres + np.where(np.arange(160) == 80, 0.01, 0))
    with pytest.raises(InputError, match=r"y coordinates are not evenly spaced \(up to 0.01 off"):
        off.terramind.embed(micro, tile_size=160)
