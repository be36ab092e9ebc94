"""STAC in, aligned cubes out: a static local catalogue over the real fixture COGs, no network at all."""

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from pystac.extensions.projection import ProjectionExtension
from rasterio.transform import from_origin

import xterramind
from tests.stac_catalogue import EPSG, FIXTURES, L2A_NAMES, catalogue, l1c_files, lonlat_bbox, make_item, write_cog
from xterramind import stac
from xterramind.errors import InputError, MissingBandsError, MissingCRSError, OptionError
from xterramind.facts import DATA


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(self, address, *args):
        raise AssertionError(f"a socket tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _scl(tmp_path) -> Path:
    """A scene classification at 20 m: vegetation (4), with a cloud (9) and its shadow (3)."""
    scl = np.full((240, 240), 4, dtype=np.uint8)
    scl[20:60, 100:160], scl[70:90, 100:160] = 9, 3
    return write_cog(tmp_path / "SCL.tif", scl, from_origin(442980, 4171980, 20, 20), nodata=0)


def _l2a_item(tmp_path, when, baseline="05.00", **properties):
    files = {L2A_NAMES[band]: path for band, path in l1c_files().items() if band in L2A_NAMES}
    files["scl"] = _scl(tmp_path)
    return make_item(f"l2a-{when:%Y%m%d}", files, when, {"s2:processing_baseline": baseline, **properties})


def _read(band: str) -> np.ndarray:
    with rasterio.open(FIXTURES / f"{band}.tif") as source:
        return source.read(1)


JUNE = datetime(2024, 6, 1, 15, 50, tzinfo=UTC)


def test_l1c_from_a_static_catalogue_is_pixel_exact(tmp_path):
    path = catalogue(tmp_path, [make_item("l1c", l1c_files(), JUNE, {"s2:processing_baseline": "02.04"})])
    cube = stac.load(path, ["S2L1C"])
    assert set(cube.data_vars) == {f"B{n:02d}" for n in range(1, 13)} | {"B8A"}
    assert cube.rio.crs.to_epsg() == EPSG and cube.rio.transform() == from_origin(442980, 4171980, 10, 10)
    assert isinstance(cube["B02"].data, __import__("dask").array.Array)
    for band in ("B02", "B03", "B04", "B08"):  # 10 m: byte-identical
        np.testing.assert_array_equal(cube[band].values, _read(band))
    np.testing.assert_array_equal(cube["B11"].values, _read("B11").repeat(2, 0).repeat(2, 1))  # 20 m: nearest
    np.testing.assert_array_equal(cube["B10"].values, _read("B10").repeat(6, 0).repeat(6, 1))  # 60 m: nearest
    assert cube.terramind.embed(xterramind.load_model("terramind_micro", weights="random")).attrs["modalities"] == ["S2L1C"]


def test_l2a_offset_is_removed_and_clouds_are_masked(tmp_path):
    path = catalogue(tmp_path, [_l2a_item(tmp_path, JUNE)])
    cube = stac.load(path, ["S2L2A"])
    raw = _read("B02").astype(np.int64)
    blue = cube["B02"].values.astype(np.int64)
    clear = np.ones((480, 480), bool)
    clear[40:120, 200:320] = clear[140:180, 200:320] = False  # the cloud and its shadow, at 10 m
    np.testing.assert_array_equal(blue[clear], np.maximum(raw[clear] - 1000, 1))
    assert (blue[~clear] == 0).all() and blue[clear].min() >= 1
    model = xterramind.load_model("terramind_micro", weights="random")
    embeddings = cube.terramind.embed(model).values
    assert np.isnan(embeddings[:, 3:7, 13:19]).all() and np.isfinite(embeddings[:, 20:, :]).all()


def test_providers_that_removed_the_offset_and_old_baselines_are_left_alone(tmp_path):
    items = [_l2a_item(tmp_path, JUNE, "05.00", **{"earthsearch:boa_offset_applied": True}),
             _l2a_item(tmp_path, datetime(2021, 6, 1, 15, 50, tzinfo=UTC), "03.00")]
    cube = stac.load(catalogue(tmp_path, items), ["S2L2A"], mask_clouds=False)
    assert cube.sizes["time"] == 2
    for t in range(2):
        np.testing.assert_array_equal(cube["B02"].isel(time=t).values, _read("B02"))


def test_time_selection_and_a_cloud_masked_median(tmp_path):
    cloudy = _l2a_item(tmp_path, JUNE)
    clear = _l2a_item(tmp_path, datetime(2024, 6, 11, 15, 50, tzinfo=UTC))
    clear.assets["scl"].href = str(write_cog(tmp_path / "SCL_clear.tif", np.full((240, 240), 4, np.uint8),
                                         from_origin(442980, 4171980, 20, 20), nodata=0))
    path = catalogue(tmp_path, [cloudy, clear])
    single = stac.load(path, ["S2L2A"], time="2024-06-11")
    assert "time" not in single.dims
    median = stac.load(path, ["S2L2A"], time="2024-06-01/2024-06-30", composite="median")
    assert "time" not in median.dims and median["B02"].dtype == np.float32
    assert median["B02"].attrs == DATA["S2L2A"].composited().attrs == {"units": "L2A reflectance x 10000"}  # no nodata 0
    expected = np.maximum(_read("B02").astype(np.float32) - 1000, 1)
    np.testing.assert_array_equal(median["B02"].values[50, 250], expected[50, 250])  # only the clear date counts
    np.testing.assert_array_equal(median["B02"].values[300, 300], expected[300, 300])
    with pytest.raises(InputError, match="no items in 2023"):
        stac.load(path, ["S2L2A"], time="2023-01-01/2023-02-01")
    for time in ("June 2024", "2024-06-01/soon"):
        with pytest.raises(OptionError, match="time must look like 2024-06-01"):
            stac.load(path, ["S2L2A"], time=time)
    with pytest.raises(OptionError, match="composite must be None or 'median'"):
        stac.load(path, ["S2L2A"], time="2024-06-01/2024-06-30", composite="mean")


def _s1_item(tmp_path, values, when=JUNE):
    files = {}
    for band, value in (("vv", values), ("vh", values / 5)):
        files[band] = write_cog(tmp_path / f"{band}.tif", value.astype(np.float32), from_origin(442980, 4171980, 10, 10))
    return make_item("s1", files, when, {"sar:instrument_mode": "IW"})


def test_sentinel1_linear_power_becomes_db_and_db_input_is_caught(tmp_path):
    linear = np.full((480, 480), 0.05, dtype=np.float32)
    linear[:10] = 0  # nodata
    s2 = make_item("l1c", l1c_files(), JUNE)
    path = catalogue(tmp_path, [s2, _s1_item(tmp_path, linear)])
    cube = stac.load(path, ["S2L1C", "S1GRD"])
    vv = cube["VV"].values
    np.testing.assert_allclose(vv[10:], 10 * np.log10(0.05), rtol=1e-6)
    assert np.isnan(vv[:10]).all() and cube["VV"].attrs == {"units": "dB", "modality": "S1GRD"}
    assert cube["B02"].attrs == DATA["S2L1C"].attrs == {"nodata": 0, "units": "L1C reflectance x 10000"}
    assert cube.terramind.embed(xterramind.load_model("terramind_micro", weights="random")).attrs["modalities"] == ["S2L1C", "S1GRD"]
    rtc = stac.load(path, ["S1RTC"])
    assert rtc.terramind.embed(xterramind.load_model("terramind_micro", weights="random")).attrs["modalities"] == ["S1RTC"]
    decibels = tmp_path / "db"
    decibels.mkdir()
    db_path = catalogue(decibels, [_s1_item(decibels, np.full((480, 480), -12.0))])
    with pytest.raises(InputError, match="look like dB already"):
        _ = stac.load(db_path, ["S1GRD"])["VV"].values


def test_dem_is_resampled_onto_the_grid(tmp_path):
    """A DEM in degrees (as Copernicus DEM), a plane rising to the east: bilinear onto the 10 m UTM grid."""
    west, south, east, north = lonlat_bbox(rasterio.open(FIXTURES / "B02.tif").bounds)
    step = 1 / 3600
    columns = int((east - west) / step) + 4
    rows = int((north - south) / step) + 4
    plane = np.tile((np.arange(columns) * 0.5).astype(np.float32), (rows, 1))
    dem = write_cog(tmp_path / "dem.tif", plane, from_origin(west - step, north + step, step, step), crs=4326, nodata=-9999)
    item = make_item("dem", {"data": dem}, JUNE, projection=False, bbox=[west - step, south - 3 * step, east + 3 * step, north + step])
    ProjectionExtension.ext(item, add_if_missing=True).code = "EPSG:4326"
    path = catalogue(tmp_path, [make_item("l1c", l1c_files(), JUNE), item])
    cube = stac.load(path, ["S2L1C", "DEM"])
    heights = cube["DEM"].values
    assert heights.shape == (480, 480) and np.isfinite(heights).all()
    assert (np.diff(heights.mean(axis=0)) > 0).all()  # rises eastwards everywhere
    assert cube.terramind.embed(xterramind.load_model("terramind_micro", weights="random")).attrs["modalities"] == ["S2L1C", "DEM"]

    # As Copernicus DEM: dated by its production, not by the scenes; kept whatever time= asks, on every date
    item.datetime = datetime(2021, 4, 22, tzinfo=UTC)
    scenes = [make_item("l1c-june", l1c_files(), JUNE), make_item("l1c-july", l1c_files(), JUNE + timedelta(days=30))]
    (tmp_path / "dated").mkdir()
    dated = catalogue(tmp_path / "dated", [*scenes, item])
    both = stac.load(dated, ["S2L1C", "DEM"], time="2024-06-01/2024-08-31")
    assert both.sizes["time"] == 2 and both["DEM"].dims == ("time", "y", "x")
    np.testing.assert_allclose(both["DEM"].isel(time=1).values, heights)
    median = stac.load(dated, ["S2L1C", "DEM"], time="2024-06-01/2024-08-31", composite="median")
    np.testing.assert_allclose(median["DEM"].values, heights)


def test_embed_and_generate_write_georeferenced_stores(tmp_path):
    cube = stac.load(catalogue(tmp_path, [_l2a_item(tmp_path, JUNE)]), ["S2L2A"])
    model = xterramind.load_model("terramind_micro", weights="random")
    cube.terramind.embed(model).terramind.to_zarr(tmp_path / "emb.zarr")
    cube.terramind.generate("LULC", model, seed=1).terramind.to_zarr(tmp_path / "lulc.zarr")
    for store in ("emb.zarr", "lulc.zarr"):
        assert xr.open_zarr(tmp_path / store, decode_coords="all").rio.crs.to_epsg() == EPSG


def test_bad_requests_get_clear_errors(tmp_path):
    l1c = make_item("l1c", l1c_files(), JUNE)
    path = catalogue(tmp_path, [l1c])
    with pytest.raises(InputError, match="no STAC items"):
        stac.load([], ["S2L2A"])
    with pytest.raises(MissingBandsError, match="lacks"):
        stac.load(path, ["S1GRD"])
    without_swir = make_item("partial", {k: v for k, v in l1c_files().items() if k != "B12"}, JUNE)
    with pytest.raises(MissingBandsError, match=r"lacks \['B12'\]"):
        stac.load([without_swir], ["S2L1C"])
    unprojected = make_item("bare", l1c_files(), JUNE, projection=False)
    with pytest.raises(MissingCRSError, match="projection extension"):
        stac.load([unprojected], ["S2L1C"])
    with pytest.raises(InputError, match=r"UTM zones 17\.\.18.*load_by_zone"):
        stac.load(path, ["S2L1C"], bbox=(-79.0, 37.5, -77.0, 37.8))
    no_scl = make_item("l2a", {L2A_NAMES[band]: file for band, file in l1c_files().items() if band in L2A_NAMES}, JUNE)
    with pytest.raises(MissingBandsError, match=r"SCL.*mask_clouds=False"):
        stac.load([no_scl], ["S2L2A"])
    for wrong in (["RGB"], ["tok_LULC"], []):
        with pytest.raises(OptionError, match=r"not RGB|not tok_LULC|modalities is empty"):
            stac.load(path, wrong)
    with pytest.raises(OptionError, match="bbox or geometry, not both"):
        stac.load(path, ["S2L1C"], bbox=(-76.0, 37.0, -75.0, 38.0), geometry={"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(OptionError, match=r"bbox must be .* in degrees"):
        stac.load(path, ["S2L1C"], bbox=(442980, 4167180, 447780, 4171980))
    with pytest.raises(OptionError, match="items must be pystac Items"):
        stac.load(["catalog.json"], ["S2L1C"])


def test_items_and_modalities_as_stac_loading_takes_them(tmp_path):
    item = make_item("l1c", l1c_files(), JUNE)
    path = catalogue(tmp_path, [item])
    for given in (path, str(path), [item], item):
        assert [found.id for found in stac.as_items(given)] == ["l1c"]
    with pytest.raises(InputError, match="cannot read a STAC catalogue"):
        stac.as_items(tmp_path / "nothing.json")
    assert [stac.loadable(name).name for name in ("s2l2a", "S2L1C", "s1grd", "S1RTC", "dem")] == list(DATA)
    with pytest.raises(OptionError, match=r"STAC loading covers S2L2A, S2L1C, S1GRD, S1RTC and DEM, not RGB"):
        stac.loadable("RGB")


def test_one_cube_per_utm_zone(tmp_path):
    path = catalogue(tmp_path, [make_item("l1c", l1c_files(), JUNE)])
    west, south, east, north = lonlat_bbox(rasterio.open(FIXTURES / "B02.tif").bounds)
    cubes = stac.load_by_zone(path, ["S2L1C"], bbox=(west - 3.5, south, east, north))  # reaches into zone 17
    assert set(cubes) == {"EPSG:32617", "EPSG:32618"}
    assert cubes["EPSG:32617"].rio.crs.to_epsg() == 32617 and cubes["EPSG:32618"].rio.crs.to_epsg() == 32618
