"""Planning areas: UTM zones, grids on the region lattice, the regions an area touches."""

import json

import numpy as np
import pytest
import shapely
from pyproj import Geod

from xterramind.errors import InputError, OptionError
from xterramind.geo import project
from xterramind.grid import regions
from xterramind.planner import plan_area, plan_grid


def test_an_area_across_a_zone_boundary_gets_one_grid_per_zone_on_the_region_lattice():
    area = (11.5, 45.0, 12.6, 45.6)  # zone 32 ends at 12 E
    plan = plan_area(area, region=48)
    assert [zone.name for zone in plan.zones] == ["utm32n", "utm33n"]
    assert [zone.crs for zone in plan.zones] == ["EPSG:32632", "EPSG:32633"]
    geodesic = abs(Geod(ellps="WGS84").geometry_area_perimeter(shapely.box(*area))[0]) / 1e6
    assert plan.area_km2 == pytest.approx(geodesic, rel=0.005)
    for zone in plan.zones:
        side = zone.region_size * 16 * 10
        assert zone.region_size == 48 and zone.grid.transform.a == 10
        assert zone.grid.transform.c % side == 0 and zone.grid.transform.f % side == 0
        assert zone.grid.height % (zone.region_size * 16) == 0 and zone.grid.width % (zone.region_size * 16) == 0
        part = project(shapely.box(*area).intersection(shapely.box(6 if zone.name == "utm32n" else 12, 0, 12 if zone.name == "utm32n" else 18, 84)), zone.crs)
        rows, cols = zone.shape
        for row in range(rows):
            for col in range(cols):
                x0, y0 = zone.grid.transform * (col * zone.region_size * 16, row * zone.region_size * 16)
                cell = shapely.box(x0, y0 - side, x0 + side, y0)
                listed = bool(((zone.region_indices[:, 0] == row) & (zone.region_indices[:, 1] == col)).any())
                assert listed == cell.intersects(part), (zone.name, row, col)


def test_tiles_are_counted_without_building_them():
    zone = plan_area((9.0, 45.0, 9.3, 45.2), region=48).zones[0]
    for cover in (False, True):
        layout = regions(zone.tiling, zone.region_size, cover)
        assert zone.tile_count(cover) == sum(layout[r][c].tile_count for r, c in zone.region_indices)
        assert zone.region(1, 2, cover) == layout[1][2]
    assert zone.tile_count() == zone.tiling.tile_count  # a rectangle touches every region: each tile once
    assert zone.pixel_count() == zone.grid.height * zone.grid.width


def test_neighbouring_runs_share_the_lattice():
    first = plan_area((9.0, 45.0, 9.2, 45.2), region=48).zones[0]
    second = plan_area((9.17, 45.13, 9.4, 45.3), region=48).zones[0]
    step = 48 * 16 * 10
    assert (first.grid.transform.c - second.grid.transform.c) % step == 0
    assert (first.grid.transform.f - second.grid.transform.f) % step == 0


def test_areas_as_geojson_polygons_features_and_files(tmp_path):
    triangle = {"type": "Polygon", "coordinates": [[[9.0, 45.0], [9.4, 45.0], [9.0, 45.3], [9.0, 45.0]]]}
    by_geometry = plan_area(triangle, region=48)
    box = plan_area((9.0, 45.0, 9.4, 45.3), region=48)
    assert by_geometry.regions < box.regions  # the far corner of the box is outside the triangle
    feature = {"type": "Feature", "properties": {}, "geometry": triangle}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    for same in (feature, str(path), shapely.geometry.shape(triangle)):
        assert np.array_equal(plan_area(same, region=48).zones[0].region_indices, by_geometry.zones[0].region_indices)


def test_an_area_across_the_equator_has_a_grid_per_hemisphere():
    plan = plan_area((15.0, -0.2, 15.2, 0.2), region=48)
    assert [zone.name for zone in plan.zones] == ["utm33n", "utm33s"]
    assert plan.zones[1].grid.transform.f > 9_000_000  # southern false northing


def test_planning_an_opened_cube_lists_only_regions_of_the_area():
    grid = plan_area((9.0, 45.0, 9.3, 45.2), region=48).zones[0].grid
    whole = plan_grid(grid, region=48)
    corner = plan_grid(grid, (9.0, 45.15, 9.05, 45.2), region=48)
    assert whole.regions == len(whole.zones[0].region_indices) > corner.regions >= 1
    with pytest.raises(InputError, match="does not overlap"):
        plan_grid(grid, (20.0, 45.0, 20.1, 45.1), region=48)


def test_bad_areas_and_options_get_clear_errors():
    """Areas are checked by xterramind.geo.area_polygon (its tests try every kind); options here."""
    with pytest.raises(InputError, match="lon/lat degrees"):
        plan_area((500000.0, 4000000.0, 510000.0, 4010000.0))
    with pytest.raises(InputError, match="west < east"):
        plan_grid(plan_area((9.0, 45.0, 9.1, 45.1)).zones[0].grid, (10.0, 45.0, 9.0, 46.0))
    grid = plan_area((9.0, 45.0, 9.1, 45.1), region=24).zones[0].grid
    for call in (lambda **o: plan_area((9.0, 45.0, 9.1, 45.1), **o), lambda **o: plan_grid(grid, **o)):
        for region in (12, 13.5, "256"):
            with pytest.raises(OptionError, match="at least one tile"):
                call(region=region)
    for resolution in (0, -10.0):
        with pytest.raises(OptionError, match="resolution must be a positive number"):
            plan_area((9.0, 45.0, 9.1, 45.1), resolution=resolution)


def test_a_plan_prints_as_a_short_summary():
    plan = plan_area((-10.0, 35.0, 30.0, 70.0))  # Europe: 7 zones, thousands of regions
    text = repr(plan)
    assert text.splitlines()[0] == f"Plan(7 zones, {plan.regions:,} regions, {plan.tile_count():,} tiles at 10 m per pixel)"
    assert len(text.splitlines()) == 8 and len(text) < 1000 and "array" not in text
    zone = plan.zones[0]
    assert repr(zone) == (f"Zone('utm29n', {zone.grid.height:,} x {zone.grid.width:,} px, {len(zone.region_indices):,} regions of "
                          f"252 tokens, {zone.tile_count():,} tiles, {zone.area_km2:,.0f} km2)")
    world = plan_area((-60.0, -30.0, 60.0, 30.0), region=2048)
    assert len(repr(world).splitlines()) == 10 and repr(world).endswith(f"and {len(world.zones) - 8} zones more")
