"""COG export: every file a valid Cloud-Optimized GeoTIFF with internal overviews, its georeferencing, nodata, band
descriptions, colours and tags as rasterio reads them, its pixels the result's, written block by block."""

import json

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from dask.callbacks import Callback
from rio_cogeo.cogeo import cog_validate

import xterramind
from xterramind import cog
from xterramind.embed import INT8_DECODING, SCALE
from xterramind.errors import InputError, MissingCRSError, OptionError, StoreError, StoreExistsError
from xterramind.facts import LULC_CLASSES, LULC_COLOURS
from xterramind.geo import georeferenced
from xterramind.grid import PixelGrid
from xterramind.store import consolidate, open_run_root

LULC_ATTRS = {"long_name": "land use / land cover class", "flag_values": list(range(10)), "nodata": 0,
              "flag_meanings": " ".join(c.replace(" ", "_").replace("/", "_") for c in LULC_CLASSES)}


def synthetic_lulc(height: int, width: int, chunk: int, crs: str = "EPSG:32618", empty_columns: int = 0,
                   seen: list | None = None) -> xr.Dataset:
    """A lazy LULC result: smooth class stripes, 0 (no data) in the first ``empty_columns``; each block computed
    appends its location to ``seen``."""

    def classes(block_info=None):
        (row0, row1), (col0, col1) = block_info[None]["array-location"]
        if seen is not None:
            seen.append((row0, col0))
        rows, cols = np.mgrid[row0:row1, col0:col1]
        values = (1 + (rows // 37 + cols // 53) % 9).astype(np.uint8)
        values[cols < empty_columns] = 0
        return values

    data = da.map_blocks(classes, dtype=np.uint8, chunks=((chunk,) * (height // chunk) + ((height % chunk,) if
                         height % chunk else ()), (chunk,) * (width // chunk) + ((width % chunk,) if width % chunk
                                                                                 else ())))
    grid = PixelGrid(crs, Affine(10, 0, 500_000, 0, -10, 4_200_000), height, width)
    attrs = {"model": "terramind_v1_tiny", "weights": "random", "product": "generation", "targets": ["LULC"]}
    dataset = xr.Dataset({"LULC": xr.DataArray(data, dims=("y", "x"), attrs=LULC_ATTRS | attrs)}, attrs=attrs)
    return georeferenced(dataset, grid)


def assert_cog(path, overviews):
    valid, errors, _warnings = cog_validate(str(path))
    assert valid and not errors, (path, errors)
    with rasterio.open(path) as src:
        assert src.overviews(1) == overviews
        assert src.profile["tiled"] and src.block_shapes[0] == (512, 512)


def tags(path) -> dict:
    with rasterio.open(path) as src:
        return src.tags()


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


# -- LULC -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lulc_cogs(lulc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lulc")
    return cog.write(lulc, folder / "lulc.tif", variable=["LULC", "LULC_probability"], overviews=[2, 4], progress=False)


def test_lulc_is_a_cog_with_its_georeferencing_values_colours_and_tags(lulc, lulc_cogs):
    classes, probabilities = lulc_cogs
    assert classes.name == "lulc.tif" and probabilities.name == "lulc_LULC_probability.tif"
    for path in lulc_cogs:
        assert_cog(path, [2, 4])
    with rasterio.open(classes) as src:
        assert src.crs == lulc.rio.crs and src.transform == lulc.rio.transform()
        assert src.count == 1 and src.dtypes == ("uint8",) and src.nodata == 0
        assert src.descriptions == ("LULC",)
        colours = src.colormap(1)
        assert colours[0] == (0, 0, 0, 0)  # no data: transparent
        assert [colours[i] for i in range(1, 10)] == [(*map(int, rgb), 255) for rgb in LULC_COLOURS[1:]]
        np.testing.assert_array_equal(src.read(1), lulc["LULC"].values)
        found = src.tags()
    assert json.loads(found["class_names"]) == list(LULC_CLASSES)
    assert found["flag_meanings"] == lulc["LULC"].attrs["flag_meanings"]
    assert found["variable"] == "LULC"
    for key in ("model", "weights", "product", "xterramind_version"):
        assert found[key] == lulc.attrs[key]
    assert json.loads(found["modalities"]) == lulc.attrs["modalities"] and int(found["seed"]) == 7


def test_float_probabilities_keep_their_values_and_class_names(lulc, lulc_cogs):
    with rasterio.open(lulc_cogs[1]) as src:
        assert src.dtypes == ("float32",) * 10 and np.isnan(src.nodata)
        assert src.descriptions == LULC_CLASSES
        np.testing.assert_array_equal(src.read(), lulc["LULC_probability"].values)


@pytest.fixture(scope="module")
def packed_store(cube, micro, tmp_path_factory):
    """LULC with uint8 CF-packed probabilities, as a store."""
    path = tmp_path_factory.mktemp("packed") / "lulc.zarr"
    cube.terramind.generate("LULC", micro, seed=7, probabilities="uint8").terramind.to_zarr(
        path, progress=False)
    return path


def test_packed_probabilities_keep_their_codes_with_scale_and_offset(packed_store, tmp_path):
    paths = cog.write(xterramind.open(packed_store), tmp_path / "lulc.tif", variable="LULC_probability",
                      overviews=[2], progress=False)
    assert_cog(paths[0], [2])
    codes = xr.open_zarr(packed_store, mask_and_scale=False)["LULC_probability"].values  # as stored
    with rasterio.open(paths[0]) as src:
        assert src.dtypes == ("uint8",) * 10 and src.nodata == 255
        assert src.scales == (pytest.approx(1 / 254),) * 10 and src.offsets == (0.0,) * 10
        np.testing.assert_array_equal(src.read(), codes)
        decoded = src.read(masked=True).astype(np.float32) * np.float32(src.scales[0])
    opened = xterramind.open(packed_store)["LULC_probability"].values
    np.testing.assert_allclose(decoded.filled(np.nan), opened, rtol=1e-6, equal_nan=True)


def test_a_store_cut_into_tiles_gives_tiles_that_together_are_the_store(packed_store, tmp_path):
    """480 px in tiles of 200 (not a multiple of it): 3 x 3 files per variable, edge ones smaller."""
    paths = cog.write_tiles(packed_store, tmp_path / "tiles", tile=200, variable=["LULC", "LULC_probability"],
                            overviews=[2], progress=False)
    assert len(paths) == 18
    stored = xterramind.open(packed_store)
    transform = stored.rio.transform()
    mosaic = np.full((480, 480), 99, np.uint8)
    for path in paths:
        assert_cog(path, [2])
        found = tags(path)
        row, col = int(found["tile_row"]), int(found["tile_col"])
        assert path.name == f"utm18n_{found['variable']}_r{row:03d}_c{col:03d}.tif" and found["zone"] == "utm18n"
        assert json.loads(found["tile_origin_px"]) == [200 * row, 200 * col]
        with rasterio.open(path) as src:
            assert src.crs == stored.rio.crs
            assert src.transform == transform * Affine.translation(200 * col, 200 * row)
            assert src.shape == (min(200, 480 - 200 * row), min(200, 480 - 200 * col))
            if found["variable"] == "LULC":
                mosaic[200 * row : 200 * row + src.height, 200 * col : 200 * col + src.width] = src.read(1)
    np.testing.assert_array_equal(mosaic, stored["LULC"].values)


def test_an_area_store_gives_each_zone_its_tiles_and_no_file_for_empty_ones(tmp_path):
    area = open_run_root(tmp_path / "area.zarr", {"utm18n": "EPSG:32618", "utm19n": "EPSG:32619"}, resume=True,
                         overwrite=False, zarr_format=2)
    synthetic_lulc(300, 500, 100).terramind.to_zarr(area / "utm18n", progress=False)
    synthetic_lulc(300, 500, 100, "EPSG:32619", empty_columns=256).terramind.to_zarr(area / "utm19n", progress=False)
    consolidate(area)  # as an area run does
    paths = cog.write_tiles(area, tmp_path / "tiles", tile=256, overviews=None, progress=False)
    names = sorted(path.name for path in paths)
    assert names == ["utm18n_LULC_r000_c000.tif", "utm18n_LULC_r000_c001.tif", "utm18n_LULC_r001_c000.tif",
                     "utm18n_LULC_r001_c001.tif", "utm19n_LULC_r000_c001.tif", "utm19n_LULC_r001_c001.tif"]
    for path in paths:
        assert_cog(path, [])
        zone = tags(path)["zone"]
        with rasterio.open(path) as src:
            assert src.crs == rasterio.CRS.from_epsg(32618 if zone == "utm18n" else 32619)
    expected = xterramind.open(area, zone="utm19n")["LULC"].values[256:, 256:]
    np.testing.assert_array_equal(read(tmp_path / "tiles" / "utm19n_LULC_r001_c001.tif")[0], expected)
    only = cog.write_tiles(area, tmp_path / "one", tile=256, zone="utm19n", overviews=None, progress=False)
    assert sorted(path.name for path in only) == names[4:]
    with pytest.raises(StoreError, match="zone="):
        cog.write_tiles(area, tmp_path / "none", zone="utm20n", progress=False)


# -- streaming ----------------------------------------------------------------------------------------------


class LargestResult(Callback):
    """The bytes of the largest value any dask task gave."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        self.largest = max(self.largest, getattr(result, "nbytes", 0))


def test_the_export_computes_each_block_once_and_never_the_whole_array(tmp_path):
    seen = []
    result = synthetic_lulc(1000, 1200, 250, seen=seen)  # 4 x 5 blocks of 62.5 kB
    with LargestResult() as largest:
        paths = cog.write(result, tmp_path / "lulc.tif", progress=False)
    assert sorted(seen) == [(row, col) for row in range(0, 1000, 250) for col in range(0, 1200, 250)]
    assert largest.largest <= 250 * 250
    assert_cog(paths[0], [2, 4])  # "auto": 1,200 px need two halvings to fit a 512 px tile
    np.testing.assert_array_equal(read(paths[0])[0], result["LULC"].values)


def test_a_tile_reads_only_its_blocks(tmp_path):
    seen = []
    result = synthetic_lulc(1000, 1000, 250, seen=seen)
    with dask.config.set(scheduler="sync"):
        cog.write_tiles(result, tmp_path / "tiles", tile=500, overviews=None, progress=False)
    assert len(seen) == 16 and len(set(seen)) == 16  # 4 tiles of 2 x 2 blocks, each block once


# -- embeddings and predictions ---------------------------------------------------------------------------


def test_float_embeddings_have_one_band_per_dimension(cube, micro, tmp_path):
    embeddings = cube.terramind.embed(micro, dtype="float16")
    paths = cog.write(embeddings, tmp_path / "emb.tif", overviews=None, progress=False)
    assert_cog(paths[0], [])
    with rasterio.open(paths[0]) as src:
        features = embeddings.sizes["embedding"]
        assert src.count == features and src.dtypes == ("float32",) * features  # float16 widened
        assert src.descriptions[:2] == ("embedding_000", "embedding_001") and np.isnan(src.nodata)
        assert src.transform == embeddings.rio.transform() and src.crs == embeddings.rio.crs
        np.testing.assert_array_equal(src.read(), embeddings.values.astype(np.float32))
        assert src.tags()["product"] == "embeddings"


def test_int8_embeddings_come_with_their_scales_and_decoding(cube, micro, tmp_path):
    codes = cube.terramind.embed(micro, dtype="int8")
    paths = cog.write(codes, tmp_path / "emb.tif", overviews=[2], progress=False)
    assert [path.name for path in paths] == ["emb.tif", "emb_embeddings_scale.tif"]
    for path in paths:
        assert_cog(path, [2])
    found = tags(paths[0])
    assert found["decoding"] == INT8_DECODING and found[SCALE] == "emb_embeddings_scale.tif"
    assert tags(paths[1])["scales_of"] == "emb.tif"
    with rasterio.open(paths[0]) as src:
        assert src.dtypes[0] == "int8" and src.nodata == -128
        q = src.read()
    with rasterio.open(tmp_path / found[SCALE]) as src:
        assert src.dtypes == ("float32",) and np.isnan(src.nodata)
        embeddings_scale = src.read(1)
    np.testing.assert_array_equal(q, codes["embeddings"].values)
    decoded = eval(found["decoding"], {"sign": np.sign, "q": q.astype(np.float32), SCALE: embeddings_scale})
    np.testing.assert_allclose(decoded, xterramind.dequantize(codes).values, rtol=1e-6, atol=1e-7)


def test_predicted_classes_keep_their_nodata_and_class_names(cube, tmp_path):
    from tasks import task_config, write_task

    task = xterramind.load_task(*write_task(tmp_path / "task", task_config(
        classes=2, class_names=["Others", "Water"], decoder="FCNDecoder", decoder_args={"channels": 8, "num_convs": 1},
        necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}])), device="cpu")
    floods = cube.terramind.predict(task)
    paths = cog.write(floods, tmp_path / "floods.tif", overviews=[2], progress=False)
    assert_cog(paths[0], [2])
    with rasterio.open(paths[0]) as src:
        assert src.nodata == 255 and src.descriptions == ("classes",)
        np.testing.assert_array_equal(src.read(1), floods["classes"].values)
        found = src.tags()
    assert found["flag_meanings"] == "Others Water" and json.loads(found["class_names"]) == ["Others", "Water"]
    assert found["product"] == "prediction"


# -- mistakes ---------------------------------------------------------------------------------------------


def test_mistakes_are_refused_with_the_fix(lulc, tmp_path):
    with pytest.raises(OptionError, match="variable="):
        cog.write(lulc, tmp_path / "a.tif", variable="LULC_probabilities", progress=False)
    plain = xr.Dataset({"a": (("y", "x"), np.zeros((4, 4))), "b": (("y", "x"), np.zeros((4, 4)))},
                       coords={"y": np.arange(4.0)[::-1], "x": np.arange(4.0)})
    with pytest.raises(MissingCRSError, match="write_crs"):
        cog.write(plain, tmp_path / "a.tif", progress=False)
    with pytest.raises(OptionError, match="variable="):
        cog.write(plain.rio.write_crs("EPSG:32618"), tmp_path / "a.tif", progress=False)
    (tmp_path / "taken.tif").write_bytes(b"")
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        cog.write(lulc, tmp_path / "taken.tif", progress=False)
    with pytest.raises(OptionError, match="overviews"):
        cog.write(lulc, tmp_path / "o.tif", overviews=[4, 2], progress=False)
    with pytest.raises(OptionError, match="compress"):
        cog.write(lulc, tmp_path / "o.tif", compress="jpeg", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.tif"]  # nothing written, no temporary left


def test_int8_codes_without_their_scales_are_refused(cube, micro, tmp_path):
    codes = cube.terramind.embed(micro, dtype="int8")["embeddings"]
    with pytest.raises(InputError, match=SCALE):
        cog.write(codes, tmp_path / "q.tif", progress=False)


def test_overwrite_replaces_a_file(lulc, tmp_path):
    (tmp_path / "lulc.tif").write_bytes(b"old")
    cog.write(lulc, tmp_path / "lulc.tif", overwrite=True, overviews=None, progress=False)
    np.testing.assert_array_equal(read(tmp_path / "lulc.tif")[0], lulc["LULC"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lulc.json", "lulc.tif"]  # its Item; no temporary


def test_auto_overviews_halve_until_one_tile_holds_the_picture():
    assert cog.overview_factors("auto", 480, 480) == []
    assert cog.overview_factors("auto", 3000, 2000) == [2, 4, 8]
    assert cog.overview_factors(None, 3000, 2000) == []


def test_a_time_series_gets_one_cog_and_item_per_date(lulc, tmp_path):
    """A GeoTIFF holds one picture: each date its own file (its date in the name, the tags and its STAC Item)."""
    import pandas as pd
    import pystac

    dates = pd.to_datetime(["2024-01-01", "2024-06-01"])
    series = xr.concat([lulc, lulc.where(lulc.LULC != 1, 2).astype(lulc.LULC.dtype)], dim=pd.Index(dates, name="time"))
    paths = cog.write(series.chunk({"time": 1}), tmp_path / "lulc.tif", overviews=None, progress=False)
    assert [p.name for p in paths] == ["lulc_2024-01-01.tif", "lulc_2024-06-01.tif"]
    for path, date in zip(paths, dates, strict=True):
        with rasterio.open(path) as dataset:
            assert dataset.tags()["date"] == date.strftime("%Y-%m-%d")
            np.testing.assert_array_equal(dataset.read(1), series.LULC.sel(time=date).values)
        assert pystac.Item.from_file(str(path.with_suffix(".json"))).datetime == date.tz_localize("UTC")
    tiles = cog.write_tiles(series.chunk({"time": 1}), tmp_path / "tiles", tile=240, overviews=None, progress=False)
    assert len(tiles) == 8 and all("_2024-" in p.name for p in tiles)
