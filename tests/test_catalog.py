"""STAC metadata of xterramind's outputs (xterramind.catalog): Items of real stores validate offline against the
extensions' schemas, their footprints are exact, and pystac, odc-stac and xterramind.stac.load read the stored
values back on the same grid."""

import datetime
import json
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from pystac.validation import JsonSchemaSTACValidator
from shapely.geometry import box, shape

import xterramind
from xterramind import catalog
from xterramind.errors import InputError, StoreError
from xterramind.geo import transformer

SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
SCHEMA_FILES = {
    catalog.PROJECTION: "projection-v2.0.0.json",
    catalog.XARRAY: "xarray-assets-v1.0.0.json",
    catalog.MLM: "mlm-v1.5.2.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster-v1.1.0.json",
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json": "classification-v1.1.0.json",
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json": "processing-v1.1.0.json",
}


def offline_validator() -> JsonSchemaSTACValidator:
    """pystac's validator with every schema from tests/data (core STAC 1.1 ships with pystac): nothing downloaded."""
    validator = JsonSchemaSTACValidator()
    for url, name in SCHEMA_FILES.items():
        validator.schema_cache[url] = json.loads((SCHEMAS / name).read_text())
    # no schema to be had: accept anything there, its fields are checked by hand below
    validator.schema_cache[catalog.EMBEDDINGS] = {"$schema": "http://json-schema.org/draft-07/schema#"}
    return validator


@pytest.fixture(scope="module")
def stores(tmp_path_factory, cube, micro, inprocess_client):
    """Real stores: float32 and int8 embeddings, land cover of a crop, a tiny model's embeddings, an area run."""
    from xterramind.planner import plan_grid
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    folder = tmp_path_factory.mktemp("catalog")
    crop = cube.isel(y=slice(0, 224), x=slice(0, 224))
    cube.terramind.embed(micro).terramind.to_zarr(folder / "embeddings.zarr", progress=False)
    cube.terramind.embed(micro, dtype="int8").terramind.to_zarr(folder / "codes.zarr", progress=False)
    crop.terramind.generate("LULC", micro, seed=7).terramind.to_zarr(folder / "lulc.zarr", progress=False)
    tiny = xterramind.load_model("terramind_v1_tiny", weights="random", device="cpu", precision="fp32")
    crop.terramind.embed(tiny).terramind.to_zarr(folder / "tiny.zarr", progress=False)
    plan = plan_grid(xterramind.modalities.grid_of(cube, "cube"), region=24)
    run(plan, CubeSource(cube), "embed", micro, folder / "area.zarr", progress_bar=False, client=inprocess_client)
    return {"folder": folder, "zone": plan.zones[0].name,
            **{name: folder / f"{name}.zarr" for name in ("embeddings", "codes", "lulc", "tiny", "area")}}


def stored(path, zone=None):
    result = xterramind.open(path, zone=zone)
    return result.to_dataset().assign_attrs(result.attrs) if hasattr(result, "to_dataset") else result


@pytest.mark.parametrize("name", ["embeddings", "codes", "lulc", "tiny"])
def test_items_of_stores_validate_offline(stores, name):
    stac_item = catalog.item(stores[name])
    stac_item.validate(validator=offline_validator())
    again = pystac.Item.from_dict(json.loads(json.dumps(stac_item.to_dict())))  # as a reader gets it from JSON
    again.validate(validator=offline_validator())
    props = stac_item.properties
    assert props["proj:code"] == "EPSG:32618" and props["xterramind:model"] == stored(stores[name]).attrs["model"]
    assert props["xterramind:weights"] == "random" and props["datetime"] and props["created"]
    zarr_asset = stac_item.assets["zarr"]
    assert zarr_asset.media_type == "application/vnd+zarr" and zarr_asset.roles == ["data"]
    assert zarr_asset.extra_fields["xarray:open_kwargs"] == {"engine": "zarr", "decode_coords": "all",
                                                             "consolidated": True}


def test_an_int8_item_says_how_to_decode(stores):
    props = catalog.item(stores["codes"]).properties
    assert props["emb:data_type"] == "int8" and props["emb:dimensions"] == 64 and props["emb:type"] == "chip"
    quantization = props["emb:quantization"]
    assert quantization["decoding"] == xterramind.embed.INT8_DECODING
    assert quantization["nodata"] == -128
    assert quantization["scale"] == {"type": "array", "array_name": "embeddings_scale", "nodata": "nan"}
    assert props["emb:chip_layout"] == {"layout_type": "regular_grid", "chip_size": [16, 16], "stride": [16, 16],
                                        "tile_size": 224, "tile_overlap": 32}
    float_props = catalog.item(stores["embeddings"]).properties
    assert float_props["emb:data_type"] == "float32" and "emb:quantization" not in float_props
    assert float_props["emb:gsd"] == 160.0


def test_bands_say_type_nodata_and_names(stores):
    assets = catalog.item(stores["lulc"]).assets
    assert assets["LULC"].extra_fields["bands"] == [{"name": "LULC", "data_type": "uint8", "nodata": 0}]
    probability = assets["LULC_probability"].extra_fields["bands"]
    assert [b["name"] for b in probability][:2] == ["no data", "water"] and probability[0]["nodata"] == "nan"
    codes = catalog.item(stores["codes"]).assets["embeddings"].extra_fields["bands"]
    assert len(codes) == 64 and codes[0] == {"name": "embeddings_0", "data_type": "int8", "nodata": -128}


def test_a_model_with_a_checkpoint_gets_mlm_fields(stores):
    tiny = catalog.item(stores["tiny"])
    assert catalog.MLM in tiny.stac_extensions and tiny.properties["mlm:name"] == "terramind_v1_tiny"
    assert tiny.properties["mlm:pretrained"] is False and tiny.assets["model"].roles == ["mlm:model"]
    assert catalog.MLM not in catalog.item(stores["lulc"]).stac_extensions  # micro: no public checkpoint


@pytest.mark.parametrize("name", ["embeddings", "lulc"])
def test_the_footprint_is_the_grid_reprojected(stores, name):
    data = stored(stores[name])
    west, south, east, north = data.rio.bounds()
    geometry = shape(catalog.item(stores[name]).geometry)
    back = shapely.transform(geometry, lambda xy: np.column_stack(transformer("EPSG:4326", "EPSG:32618")
                                                                  .transform(*xy.T)))
    pixel = abs(data.rio.resolution()[0])
    assert np.allclose(back.bounds, (west, south, east, north), atol=0.01 * pixel)
    assert back.symmetric_difference(box(west, south, east, north)).area < 0.01 * pixel * (east - west) * 4
    corners = transformer("EPSG:32618", "EPSG:4326").transform([west, east, east, west], [south, south, north, north])
    assert geometry.buffer(1e-9).contains(shapely.MultiPoint(np.column_stack(corners)))
    assert catalog.item(stores[name]).bbox == list(geometry.bounds)


def test_a_long_edge_is_densified_to_under_a_pixel():
    grid = xterramind.grid.PixelGrid("EPSG:32632", Affine(10, 0, 300_000, 0, -10, 5_400_000), 30_000, 40_000)
    geometry, _ = catalog.footprint(grid)
    ring = np.array(geometry["coordinates"][0])
    assert len(ring) > 5
    mid = (ring[:-1] + ring[1:]) / 2  # straight lon/lat segments, projected back, stay on the edges
    x, y = transformer("EPSG:4326", "EPSG:32632").transform(mid[:, 0], mid[:, 1])
    off = np.minimum.reduce([abs(x - 300_000), abs(x - 700_000), abs(y - 5_100_000), abs(y - 5_400_000)])
    assert off.max() < 0.1


@pytest.mark.parametrize("name", ["embeddings", "codes", "lulc"])
def test_odc_stac_loads_the_stored_values_on_the_grid(stores, name):
    stac_item = catalog.item(stores[name])
    data = stored(stores[name])
    variable = "embeddings_scale" if name == "codes" else "LULC" if name == "lulc" else "embeddings"
    band = variable if data[variable].ndim == 2 else f"{variable}.5"
    loaded = odc.stac.load([stac_item], bands=[band], chunks={}).isel(time=0)
    expected = data[variable] if data[variable].ndim == 2 else data[variable].isel(embedding=4)
    assert loaded.odc.geobox.crs.epsg == 32618
    assert loaded.odc.geobox.affine == data.rio.transform()
    np.testing.assert_array_equal(loaded[band].values, expected.values)


def test_xterramind_stac_load_gives_back_the_stored_result(stores):
    for name in ("embeddings", "lulc"):
        back = xterramind.stac.load(catalog.item(stores[name]))
        data = xterramind.open(stores[name])
        assert back.rio.crs == data.rio.crs and back.rio.transform() == data.rio.transform()
        assert back.identical(data)


def test_a_collection_of_an_area_run(stores, tmp_path):
    collection = catalog.collection(stores["area"])
    collection.normalize_hrefs(str(tmp_path / "collection.json"))  # links need hrefs to validate
    collection.validate(validator=offline_validator())
    items = list(collection.get_items())
    assert [i.id for i in items] == [f"area-{stores['zone']}"]
    items[0].validate(validator=offline_validator())
    assert items[0].assets["zarr"].extra_fields["xarray:open_kwargs"]["group"] == stores["zone"]
    assert f'/{stores["zone"]}/embeddings' in items[0].assets["embeddings"].href
    back = xterramind.stac.load(collection)
    data = xterramind.open(stores["area"], zone=stores["zone"])
    np.testing.assert_array_equal(back.values, data.values)
    assert back.rio.transform() == data.rio.transform()
    loaded = odc.stac.load(items, bands=["embeddings.1"], chunks={}).isel(time=0)
    np.testing.assert_array_equal(loaded["embeddings.1"].values, data.isel(embedding=0).values)


def test_a_saved_catalogue_is_self_contained_and_loads_back(stores, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copytree(stores["lulc"], moved / "lulc.zarr")
    root = catalog.write(moved / "lulc.zarr")
    assert root == moved / "lulc.zarr.stac" / "catalog.json"
    stac_item = next(pystac.Catalog.from_file(str(root)).get_items(recursive=True))
    assert not Path(json.loads(Path(stac_item.get_self_href()).read_text())["assets"]["zarr"]["href"]).is_absolute()
    stac_item.validate(validator=offline_validator())
    assert xterramind.stac.load(str(root)).identical(xterramind.open(moved / "lulc.zarr"))


def test_a_cog_item(tmp_path):
    path = tmp_path / "lulc.tif"
    values = np.arange(64 * 64, dtype=np.uint8).reshape(64, 64) % 10
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:32618", nodata=0,
                   transform=Affine(10, 0, 443_000, 0, -10, 4_172_000), tiled=True, blockxsize=32, blockysize=32)
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(values, 1)
        sink.set_band_description(1, "LULC")
        sink.update_tags(model="terramind_micro", weights="random", product="generation", xterramind_version="0.1.0")
    stac_item = catalog.cog_item(path)
    stac_item.validate(validator=offline_validator())
    assert stac_item.properties["xterramind:model"] == "terramind_micro"
    assert stac_item.assets["lulc"].extra_fields["bands"] == [{"name": "LULC", "data_type": "uint8", "nodata": 0}]
    loaded = odc.stac.load([stac_item], bands=["lulc"], chunks={}).isel(time=0)
    np.testing.assert_array_equal(loaded["lulc"].values, values)
    assert loaded.odc.geobox.affine == profile["transform"]


def test_bad_inputs_raise_errors_that_name_the_fix(stores, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not a zarr store"):
        catalog.item(tmp_path / "empty")
    with pytest.raises(StoreError, match="single store, not an area run"):
        catalog.item(stores["lulc"], zone="utm18n")
    with pytest.raises(StoreError, match=r"area run with zones \['utm18n'\]: describe one with zone="):
        catalog.item(stores["area"], zone="utm99n")
    with pytest.raises(StoreError, match="describe a single store"):
        catalog.collection(stores["lulc"])
    foreign = pystac.Item("s2", {"type": "Point", "coordinates": [0, 0]}, [0, 0, 0, 0],
                          datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC), {})
    with pytest.raises(InputError, match="not xterramind products"):
        catalog.load(foreign)
    with pytest.raises(InputError, match="GeoTIFF"):
        catalog.cog_item([])


def test_a_run_of_several_zones_needs_zone(stores, tmp_path):
    """A run store of two zones (the one zone copied under a second name): Items, Collection and loading say zone=."""
    import shutil

    import zarr

    from xterramind.store import RUN_ATTR, consolidate

    run = tmp_path / "two.zarr"
    shutil.copytree(stores["area"], run)
    shutil.copytree(run / stores["zone"], run / "copy")
    root = zarr.open_group(str(run), mode="r+")
    root.attrs[RUN_ATTR] = {"zones": dict(root.attrs[RUN_ATTR]["zones"], copy=root.attrs[RUN_ATTR]["zones"][stores["zone"]])}
    consolidate(run)
    with pytest.raises(StoreError, match="describe one with zone="):
        catalog.item(run)
    collection = catalog.collection(run)
    assert sorted(i.id for i in collection.get_items()) == sorted([f"two-{stores['zone']}", "two-copy"])
    with pytest.raises(InputError, match="pick one with zone="):
        xterramind.stac.load(collection)
    path = catalog.write(run)
    assert path.name == "collection.json"
    back = xterramind.stac.load(str(path), zone="copy")
    np.testing.assert_array_equal(back.values, xterramind.open(stores["area"], zone=stores["zone"]).values)


def test_each_cog_tile_of_an_area_run_has_its_item_next_to_it(stores, tmp_path):
    """``cog.write_tiles`` of an area run: every tile's Item (``<tile>.json``, relative hrefs) validates, and
    odc-stac loads the tile's values from it, which are the zone's."""
    from xterramind import cog

    tiles = cog.write_tiles(stores["area"], tmp_path / "tiles", tile=16, progress=False)
    zone = xterramind.open(stores["area"], zone=stores["zone"])
    assert len(tiles) == 4
    for path in tiles:
        stac_item = pystac.Item.from_file(str(path.with_suffix(".json")))
        stac_item.validate(validator=offline_validator())
        (asset,) = stac_item.assets.values()
        assert not Path(asset.href).is_absolute() and Path(asset.get_absolute_href()) == path.resolve()
        band = asset.extra_fields["bands"][5]["name"]  # odc-stac counts an asset's bands from 1
        loaded = odc.stac.load([stac_item], bands=[f"{path.stem}.6"], chunks={}).isel(time=0)
        col, row = (round(v) for v in ~zone.rio.transform() * loaded.odc.geobox.affine * (0, 0))
        part = zone.isel(embedding=5).values[row:row + loaded.sizes["y"], col:col + loaded.sizes["x"]]
        np.testing.assert_array_equal(next(iter(loaded.data_vars.values())).values, part)
        assert band == "embedding_005"


def test_a_dated_store_has_its_time_range_and_one_band_per_date_and_dimension(stores, tmp_path):
    """Embeddings of two dates: the Item spans them, and its bands are GDAL's (dates first, then dimensions), so
    odc-stac's band n is the stored value of that date and dimension."""
    import pandas as pd

    dates = pd.to_datetime(["2024-01-01", "2024-06-01"])
    single = xterramind.open(stores["embeddings"])
    dated = xr.concat([single, single * 2], dim=pd.Index(dates, name="time")).chunk({"time": 1})
    dated.attrs = single.attrs
    dated.terramind.to_zarr(tmp_path / "dated.zarr", progress=False)
    stac_item = catalog.item(tmp_path / "dated.zarr")
    stac_item.validate(validator=offline_validator())
    assert (stac_item.properties["start_datetime"], stac_item.properties["end_datetime"]) == (
        "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z")
    bands = stac_item.assets["embeddings"].extra_fields["bands"]
    features = single.sizes["embedding"]
    assert len(bands) == 2 * features and bands[features + 5]["name"] == "embeddings_5 2024-06-01"
    loaded = odc.stac.load([stac_item], bands=[f"embeddings.{features + 6}"], chunks={}).isel(time=0)
    np.testing.assert_array_equal(next(iter(loaded.data_vars.values())).values, 2 * single.isel(embedding=5).values)
