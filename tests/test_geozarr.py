"""GeoZarr conventions (proj:, spatial:, zarr_conventions) in every store: they follow the specs' schemas, read the
specs' own examples, and agree exactly with the CF and GDAL georeferencing of the same store, which readers see as
before."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from affine import Affine
from rasterio.crs import CRS

import xterramind
from xterramind import geozarr, store
from xterramind.errors import InputError, MissingCRSError, OptionError

DATA = Path(__file__).parent / "data" / "geozarr"


def _json(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _node(attrs: dict, node_type: str = "array", dims=("y", "x")) -> dict:
    """A zarr v3 metadata document holding ``attrs``: what the specs' schemas validate."""
    return {"zarr_format": 3, "node_type": node_type, "attributes": attrs,
            **({"dimension_names": list(dims)} if node_type == "array" else {})}


def _validate(attrs: dict, node_type: str = "array") -> None:
    """Against the spatial v0.1 schema and the zarr-conventions schema whole, and the proj schema's attribute rules
    (its declaration constants predate the v0.1 release declared: tests/data/geozarr/README.md)."""
    document = _node(attrs, node_type)
    jsonschema.validate(document, _json("spatial/schema.json"))
    jsonschema.validate(document, _json("zarr-conventions/schema.json"))
    proj = _json("proj/schema.json")
    jsonschema.validate(attrs, {"$ref": "#/$defs/projAttributes", "$defs": proj["$defs"]})


# -- the specs' own documents -----------------------------------------------------------------------------------

EXAMPLES = {  # file -> (CRS, transform, shape) each describes
    "spatial/example-proj.json": ("EPSG:3857", Affine(156543.03392804097, 0, -20037508.342789244, 0,
                                                      -156543.03392804097, 20037508.342789244), (256, 256)),
    "proj/example-epsg3587.json": ("EPSG:3857", Affine(156543.03392804097, 0, -20037508.342789244, 0,
                                                       -156543.03392804097, 20037508.342789244), (256, 256)),
    "proj/example-epsg26711.json": ("EPSG:26711", Affine(60, 0, 440720, 0, -60, 3750120), None),
    "proj/example-wkt2.json": ("EPSG:32633", Affine(30, 0, 500000, 0, -30, 5000000), None),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_read_gives_what_the_specs_examples_describe(name):
    crs, transform, shape = geozarr.read(_json(name))
    expected_crs, expected_transform, expected_shape = EXAMPLES[name]
    assert crs == CRS.from_user_input(expected_crs)
    assert transform == expected_transform
    assert shape == expected_shape


@pytest.mark.parametrize("name", ["spatial/example-multiscales.json", "proj/example-multiscales.json"])
def test_read_gives_each_level_of_the_multiscales_examples(name):
    """The group holds the CRS and dimensions, each layout item its level's transform and shape."""
    attrs = _json(name)["attributes"] if "attributes" in _json(name) else _json(name)
    group = {k: v for k, v in attrs.items() if k != "multiscales"}
    levels = [geozarr.read({**group, **item}) for item in attrs["multiscales"]["layout"]]
    assert [level[0] for level in levels] == [CRS.from_epsg(32633)] * len(levels)
    assert levels[0][1:] == (Affine(10, 0, 500000, 0, -10, 5000000), (1200, 1200))
    assert levels[1][1:] == (Affine(20, 0, 500000, 0, -20, 5000000), (600, 600))
    with pytest.raises(InputError, match="no spatial:transform"):
        geozarr.read(group)  # the group alone has no grid


def test_read_refuses_undeclared_or_unreadable_attributes():
    attrs = geozarr.attributes("EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5e6), (4, 4))
    with pytest.raises(InputError, match="declare no spatial convention"):
        geozarr.read({**attrs, "zarr_conventions": geozarr.conventions("proj")})
    with pytest.raises(InputError, match="no CRS"):
        geozarr.read({k: v for k, v in attrs.items() if k != "proj:code"})
    with pytest.raises(InputError, match="transform_type"):
        geozarr.read({**attrs, "spatial:transform_type": "rpc"})
    with pytest.raises(InputError, match="mapping"):
        geozarr.read([attrs])


def test_a_node_registered_grid_reads_as_pixel_corners():
    """spatial:registration "node" puts the transform on cell centres; read gives rasterio's corners."""
    attrs = {**geozarr.attributes("EPSG:4326", Affine(1, 0, -180, 0, -1, 90), (181, 361)),
             "spatial:registration": "node", "spatial:bbox": [-180.0, -90.0, 180.0, 90.0]}  # the poles' centres
    del attrs["spatial:shape"]
    _, transform, shape = geozarr.read(attrs)
    assert transform == Affine(1, 0, -180.5, 0, -1, 90.5)
    assert shape == (181, 361)  # the bbox spans the outer cells' centres: one more row and column


# -- what xterramind writes ---------------------------------------------------------------------------------------

LOCAL = ('PROJCS["local TM",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
         'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
         'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",13.3],PARAMETER["scale_factor",1],'
         'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]')


@pytest.mark.parametrize("crs", ["EPSG:32618", "EPSG:32733", "EPSG:4326", LOCAL])
@pytest.mark.parametrize("node_type", ["array", "group"])
def test_the_attributes_written_follow_the_specs_schemas(crs, node_type):
    attrs = geozarr.attributes(CRS.from_user_input(crs), Affine(10, 0, 442980, 0, -10, 4171980), (480, 480))
    _validate(attrs, node_type)
    assert ("proj:code" in attrs) == (crs != LOCAL)  # a CRS without an EPSG code is given in full
    assert geozarr.read(attrs)[0] == CRS.from_user_input(crs)


def test_the_schemas_can_fail():
    """The checks above would see a wrong document: two CRS members (the proj schema takes one), a bbox of 3."""
    attrs = geozarr.attributes("EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5e6), (4, 4))
    with pytest.raises(jsonschema.ValidationError):
        _validate({**attrs, "proj:wkt2": CRS.from_epsg(32633).to_wkt()})
    with pytest.raises(jsonschema.ValidationError):
        _validate({**attrs, "spatial:bbox": [0, 0, 1]})
    with pytest.raises(jsonschema.ValidationError):  # an array must name its spatial dimensions
        _validate({k: v for k, v in attrs.items() if k != "spatial:dimensions"})


def test_the_spatial_attributes_follow_the_specs_order():
    """Y name first; [a, b, c, d, e, f]; [height, width]; [xmin, ymin, xmax, ymax] of the outer pixel edges."""
    attrs = geozarr.attributes("EPSG:32733", Affine(20, 0, 300000, 0, -20, 8000000), (30, 50), dims=("lat", "lon"))
    assert attrs["spatial:dimensions"] == ["lat", "lon"]
    assert attrs["spatial:transform"] == [20.0, 0.0, 300000.0, 0.0, -20.0, 8000000.0]
    assert attrs["spatial:shape"] == [30, 50]
    assert attrs["spatial:bbox"] == [300000.0, 7999400.0, 301000.0, 8000000.0]
    assert attrs["spatial:registration"] == "pixel"
    assert [c["name"] for c in attrs["zarr_conventions"]] == ["proj", "spatial"]


def test_conventions_gives_the_declarations_by_name():
    declared = geozarr.conventions("multiscales", "proj", "spatial")
    assert [c["uuid"] for c in declared] == ["d35379db-88df-4056-af3a-620245f8e347",
                                            "f17cb550-5864-4468-aeb7-f3180cfb622f",
                                            "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4"]
    assert all(set(c) == {"uuid", "schema_url", "spec_url", "name", "description"} for c in declared)
    jsonschema.validate({"attributes": {"zarr_conventions": declared}}, _json("zarr-conventions/schema.json"))
    # the spatial declaration is exactly the v0.1 schema's constants (the others' schemas could not be read here)
    constants = _json("spatial/schema.json")["$defs"]["conventionMetadata"]["properties"]
    assert declared[2] == {key: spec["const"] for key, spec in constants.items()}
    declared[0]["name"] = "changed"
    assert geozarr.conventions("multiscales")[0]["name"] == "multiscales"  # copies
    with pytest.raises(OptionError, match="multiscales"):
        geozarr.conventions("proj:")


@pytest.mark.parametrize(("args", "error"), [
    ((None, Affine.identity(), (2, 2)), MissingCRSError),
    (("EPSG:99999999", Affine.identity(), (2, 2)), InputError),
    (("EPSG:32633", (1, 0, 0), (2, 2)), InputError),
    (("EPSG:32633", Affine.scale(0), (2, 2)), InputError),
    (("EPSG:32633", Affine.identity(), (2, 0)), InputError),
    (("EPSG:32633", Affine.identity(), (2.0, 2)), InputError),
])
def test_bad_inputs_get_clear_errors(args, error):
    with pytest.raises(error):
        geozarr.attributes(*args)
    with pytest.raises(InputError, match="Y and X"):
        geozarr.attributes("EPSG:32633", Affine.identity(), (2, 2), dims=("x", "x"))


# -- real stores ------------------------------------------------------------------------------------------------

ZONES = {  # CRS -> the y shift putting the scene at a plausible northing there (southern: from 10 000 km)
    "EPSG:32618": 0.0, "EPSG:32633": 1_000_000.0, "EPSG:32718": 4_000_000.0, "EPSG:32733": 3_000_000.0,
}
LULC_ZONES = ("EPSG:32633", "EPSG:32718")  # land cover in one zone of each hemisphere


def _moved(cube, crs: str):
    """The real scene, re-georeferenced into ``crs`` (the values stay; only the georeferencing is the test's)."""
    moved = cube.assign_coords(y=cube.y + ZONES[crs])
    return moved.drop_vars("spatial_ref").rio.write_crs(crs).rio.write_transform(moved.rio.transform(recalc=True))


@pytest.fixture(scope="module")
def written(tmp_path_factory, cube, micro):
    """Embeddings in four zones of both hemispheres and land cover in two, written with to_zarr."""
    folder = tmp_path_factory.mktemp("geozarr")
    paths = {}
    for crs in ZONES:
        moved = _moved(cube, crs)
        paths[f"embed {crs}"] = folder / f"embed-{crs[5:]}.zarr"
        moved.terramind.embed(micro).terramind.to_zarr(paths[f"embed {crs}"], progress=False)
        if crs in LULC_ZONES:
            paths[f"lulc {crs}"] = folder / f"lulc-{crs[5:]}.zarr"
            moved.terramind.generate("LULC", micro, seed=7).terramind.to_zarr(paths[f"lulc {crs}"], progress=False)
    return paths


def _georeferenced_nodes(path: Path) -> dict:
    """The root group's and each (…, y, x) data variable's attributes, by name ("" for the root)."""
    root = zarr.open_group(str(path), mode="r")
    dataset = xr.open_zarr(str(path), decode_coords="all")
    names = [name for name, var in dataset.data_vars.items() if var.dims[-2:] == ("y", "x")]
    return {"": dict(root.attrs), **{name: dict(root[name].attrs) for name in names}}


def _check_three_agree(path: Path, crs: str | None = None) -> None:
    """GeoZarr (proj:, spatial:), CF (spatial_ref, x/y) and GDAL (its reading, _CRS) give one georeferencing."""
    dataset = xr.open_zarr(str(path), decode_coords="all")
    x, y = dataset.x.values, dataset.y.values
    a, e = x[1] - x[0], y[1] - y[0]
    cf_transform = Affine(a, 0, x[0] - a / 2, 0, e, y[0] - e / 2)
    cf_crs = CRS.from_wkt(dataset.spatial_ref.attrs["crs_wkt"])
    cf_bbox = [x[0] - a / 2, y[-1] + e / 2, x[-1] + a / 2, y[0] - e / 2]
    nodes = _georeferenced_nodes(path)
    assert len(nodes) > 1, "no georeferenced variable found"
    for name, attrs in nodes.items():
        geo_crs, geo_transform, geo_shape = geozarr.read(attrs)
        _validate(attrs, "group" if name == "" else "array")
        assert geo_crs == cf_crs and (crs is None or geo_crs == CRS.from_user_input(crs)), name
        assert geo_transform == cf_transform, name
        assert geo_shape == (y.size, x.size), name
        assert attrs["spatial:bbox"] == cf_bbox, name
        if name:
            assert CRS.from_wkt(attrs["_CRS"]["wkt"]) == geo_crs, name
            with rasterio.open(f'ZARR:"{path}":/{name}') as source:
                assert source.crs == geo_crs, name
                assert source.transform == geo_transform, name
                assert source.shape == geo_shape, name
                assert list(source.bounds) == attrs["spatial:bbox"], name


@pytest.mark.parametrize("key", [*(f"embed {crs}" for crs in ZONES), *(f"lulc {crs}" for crs in LULC_ZONES)])
def test_geozarr_cf_and_gdal_agree_exactly(written, key):
    _check_three_agree(written[key], key.split()[1])


def test_the_stores_open_as_their_results(written, cube):
    """xterramind.open gives the result back in its zone, on the grid the GeoZarr attributes state."""
    for key, path in written.items():
        crs = key.split()[1]
        result = xterramind.open(path)
        attrs = zarr.open_group(str(path), mode="r").attrs
        assert result.rio.crs == CRS.from_user_input(crs) == geozarr.read(attrs)[0], key
        assert result.rio.transform() == geozarr.read(attrs)[1], key
    embeddings = xterramind.open(written["embed EPSG:32733"])
    assert embeddings.rio.transform().f == cube.rio.transform().f + ZONES["EPSG:32733"]


@pytest.fixture(scope="module")
def with_and_without(tmp_path_factory, lulc):
    """The same land cover written as now and as before (no GeoZarr attributes)."""
    folder = tmp_path_factory.mktemp("before")
    result = lulc.chunk({"y": 240, "x": 240})
    result.terramind.to_zarr(folder / "now.zarr", progress=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "write_geozarr", lambda path, dataset: None)
        result.terramind.to_zarr(folder / "before.zarr", progress=False)
    return folder / "now.zarr", folder / "before.zarr", result


def test_readers_read_the_stores_as_before(with_and_without):
    now, before, result = with_and_without
    assert "spatial:transform" in zarr.open_group(str(now), mode="r").attrs
    assert "spatial:transform" not in zarr.open_group(str(before), mode="r").attrs
    opened = [xterramind.open(now), xterramind.open(before)]
    plain = [xr.open_zarr(str(path), decode_coords="all") for path in (now, before)]
    for a, b in (opened, plain):
        assert a.rio.crs == b.rio.crs == result.rio.crs
        assert a.rio.transform() == b.rio.transform() == result.rio.transform()
        assert set(a.data_vars) == set(b.data_vars) == set(result.data_vars)
        for name in a.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values)
            assert a[name].rio.crs == b[name].rio.crs and a[name].rio.transform() == b[name].rio.transform()
    for name in opened[0].data_vars:
        with rasterio.open(f'ZARR:"{now}":/{name}') as new, rasterio.open(f'ZARR:"{before}":/{name}') as old:
            assert (new.crs, new.transform, new.shape, new.count) == (old.crs, old.transform, old.shape, old.count)
            np.testing.assert_array_equal(new.read(), old.read())


def test_a_store_written_before_still_resumes(with_and_without):
    """The attributes are outside the fingerprint: the same call completes a store written without them."""
    _, before, result = with_and_without
    report = result.terramind.to_zarr(before, progress=False)
    assert report.written == 0 and report.skipped == report.regions


def test_other_conventions_on_a_variable_are_kept(tmp_path, lulc):
    """A declaration already on a variable (a colleague's, say) stays beside proj and spatial."""
    result = lulc.chunk({"y": 240, "x": 240})
    other = {"uuid": "2dc8d146-3932-4e08-8542-06aa0e826508", "name": "other"}
    result["LULC"].attrs["zarr_conventions"] = [other, *geozarr.conventions("spatial")]
    result.terramind.to_zarr(tmp_path / "kept.zarr", progress=False)
    declared = zarr.open_group(str(tmp_path / "kept.zarr"), mode="r")["LULC"].attrs["zarr_conventions"]
    assert [c["name"] for c in declared] == ["other", "proj", "spatial"]


def test_an_area_runs_zone_store_agrees(tmp_path, cube, micro, inprocess_client):
    """A zone of an area run on a distributed cluster is a store like the others."""
    from xterramind.planner import plan_grid
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    moved = _moved(cube, "EPSG:32733")
    plan = plan_grid(xterramind.modalities.grid_of(moved, "cube"), region=24)
    report = run(plan, CubeSource(moved), "embed", micro, tmp_path / "area.zarr", progress_bar=False,
                 client=inprocess_client)
    assert report.written == report.regions
    zone = plan.zones[0].name
    assert zone == "utm33s"
    assert "proj:code" not in zarr.open_group(str(tmp_path / "area.zarr"), mode="r").attrs  # zones differ: not here
    _check_three_agree(tmp_path / "area.zarr" / zone, "EPSG:32733")
