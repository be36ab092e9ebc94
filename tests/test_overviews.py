"""Overviews: every level is the documented aggregation of the one below (recomputed here with numpy), read with
xarray, rioxarray and GDAL on the right grid; the coarsest level of a large store costs a sliver of its bytes; an
interrupted build resumes."""

import threading
import warnings

import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from affine import Affine

import xterramind
from xterramind import overviews
from xterramind.errors import OptionError, StoreError
from xterramind.geo import georeferenced
from xterramind.grid import PixelGrid

ORIGIN = Affine(10, 0, 600_000, 0, -10, 4_200_000)


def grid(height, width):
    return PixelGrid("EPSG:32633", ORIGIN, height, width)


def write(path, variables, height, width, chunk):
    """A synthetic result on a georeferenced grid, written as xterramind writes stores."""
    dataset = georeferenced(xr.Dataset(variables), grid(height, width)).chunk({"y": chunk, "x": chunk})
    dataset.terramind.to_zarr(path, progress=False)
    return path


def level(path, number, name, **options):
    return xr.open_zarr(path, group=str(number) if number else None, **options)[name].values


def blocks(values, pad):
    """(..., h/2, w/2, 4) 2 x 2 blocks, an odd edge padded: written independently of the module's own helper."""
    h, w = values.shape[-2:]
    padded = np.full((*values.shape[:-2], h + h % 2, w + w % 2), pad, dtype=values.dtype)
    padded[..., :h, :w] = values
    return np.stack([padded[..., i::2, j::2] for i in (0, 1) for j in (0, 1)], axis=-1)


def mode_of(values, nodata):
    quads = blocks(values, nodata)
    out = np.full(quads.shape[:-1], nodata, values.dtype)
    for index in np.ndindex(out.shape):
        valid = [int(v) for v in quads[index] if v != nodata]
        if valid:
            counts = {c: valid.count(c) for c in valid}
            out[index] = min(counts, key=lambda c: (-counts[c], c))
    return out


def nanmean_of(values):
    with warnings.catch_warnings():  # numpy warns of the all-NaN blocks, which give NaN as they should
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(blocks(values.astype(np.float64), np.nan), axis=-1)


@pytest.fixture(scope="module")
def categorical(tmp_path_factory):
    """150 x 97 classes (odd sizes, nodata 0 along the edges and in a hole), 32-px chunks: 3 levels."""
    rng = np.random.default_rng(1)
    classes = rng.integers(1, 5, (150, 97)).astype(np.uint8)
    classes[:, :7] = 0
    classes[-3:, :] = 0
    classes[40:60, 40:70] = 0
    classes[::5, 1::3] = 0
    attrs = {"flag_values": list(range(5)), "nodata": 0, "long_name": "class"}
    path = write(tmp_path_factory.mktemp("cat") / "classes.zarr",
                 {"LULC": (("y", "x"), da.from_array(classes), attrs)}, 150, 97, 32)
    report = overviews.build(path, progress=False)
    return path, report


def test_each_categorical_level_is_the_mode_of_the_level_below(categorical):
    path, report = categorical
    assert [lvl.regions for lvl in report.levels] == [3 * 2, 2 * 1, 1]  # 75 x 49, 38 x 25, 19 x 13 in 32-px chunks
    below = level(path, 0, "LULC")
    for number, shape in enumerate([(75, 49), (38, 25), (19, 13)], start=1):
        values = level(path, number, "LULC")
        assert values.shape == shape and values.dtype == np.uint8
        np.testing.assert_array_equal(values, mode_of(below, 0))
        below = values
    assert (level(path, 1, "LULC")[-1] == 0).all()  # the nodata edge stays nodata (its last row: 1 nodata row + pad)
    assert level(path, 1, "LULC")[0, :3].tolist() == [0, 0, 0]


def test_float_and_packed_levels_are_means_of_the_valid_values(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.normal(1000, 300, (2, 70, 45)).astype(np.float32)
    image[:, :, -5:] = np.nan
    image[0, 10:30, 10:30] = np.nan
    half = rng.normal(0, 1, (70, 45)).astype(np.float16)
    codes = rng.integers(0, 255, (3, 70, 45)).astype(np.uint8)  # 255 (nodata) about 1 in 255
    codes[:, :6, :] = 255
    packing = {"scale_factor": np.float32(1 / 254), "_FillValue": np.uint8(255), "nodata": 255}
    path = write(tmp_path / "floats.zarr", {
        "S2L2A": (("band", "y", "x"), da.from_array(image), {"units": "reflectance"}),
        "value": (("y", "x"), da.from_array(half)),
        "LULC_probability": (("class", "y", "x"), da.from_array(codes), packing)}, 70, 45, 16)
    report = overviews.build(path, progress=False)
    assert len(report.levels) == 3  # 35 x 23, 18 x 12, 9 x 6
    for number in (1, 2, 3):
        for name, tolerance in (("S2L2A", 1e-3), ("value", 2e-3)):
            below, values = level(path, number - 1, name), level(path, number, name)
            assert values.dtype == below.dtype
            np.testing.assert_allclose(values, nanmean_of(below).astype(values.dtype), rtol=tolerance, equal_nan=True)
        raw_below = level(path, number - 1, "LULC_probability", mask_and_scale=False)
        raw = level(path, number, "LULC_probability", mask_and_scale=False)
        scale = np.float64(np.float32(1 / 254))
        expected = nanmean_of(np.where(raw_below == 255, np.nan, raw_below * scale))
        assert raw.dtype == np.uint8 and ((raw == 255) == np.isnan(expected)).all()
        ok = ~np.isnan(expected)  # packed again: the nearest code to the mean of the decoded values
        assert np.abs(raw[ok] * scale - expected[ok]).max() <= 0.5 * scale * (1 + 1e-9)
    probabilities = xr.open_zarr(path, group="1")["LULC_probability"]  # CF decoding as on level 0
    assert probabilities.dtype.kind == "f" and np.isnan(probabilities.values[:, :3]).all()


def test_int8_embedding_levels_are_the_mean_vectors_encoded_again(cube, micro, tmp_path):
    codes = cube.terramind.embed(micro, dtype="int8", chunks=12)  # 30 x 30 tokens: levels of 15 x 15 and 8 x 8
    codes.terramind.to_zarr(tmp_path / "int8.zarr", progress=False)
    report = overviews.build(tmp_path / "int8.zarr", progress=False)
    assert [lvl.regions for lvl in report.levels] == [4, 1]
    below = xterramind.dequantize(xr.open_zarr(tmp_path / "int8.zarr")).values
    for number in (1, 2):
        stored = xr.open_zarr(tmp_path / "int8.zarr", group=str(number))
        assert stored["embeddings"].dtype == np.int8 and stored["embeddings_scale"].dtype == np.float32
        vectors = xterramind.dequantize(stored).values
        expected = np.nanmean(blocks(below, np.nan), axis=-1)
        cosine = (vectors * expected).sum(0) / np.linalg.norm(vectors, axis=0) / np.linalg.norm(expected, axis=0)
        assert cosine.min() > 0.999
        np.testing.assert_allclose(stored["embeddings_scale"].values, np.linalg.norm(expected, axis=0), rtol=1e-5)
        below = vectors


def test_levels_open_georeferenced_with_xarray_and_gdal(categorical):
    path, _ = categorical
    for number in (1, 2, 3):
        expected = ORIGIN * Affine.scale(2**number)
        opened = xr.open_zarr(path, group=str(number), decode_coords="all")
        assert opened.rio.crs.to_epsg() == 32633 and opened.rio.transform() == expected
        with rasterio.open(f'ZARR:"{path}":/{number}/LULC') as source:
            assert source.crs.to_epsg() == 32633 and source.transform.almost_equals(expected)
            np.testing.assert_array_equal(source.read(1), opened["LULC"].values)
    with rasterio.open(f'ZARR:"{path}":/LULC') as source:  # level 0 as before
        assert source.transform.almost_equals(ORIGIN) and source.shape == (150, 97)
    full = xterramind.open(path)
    assert full.rio.transform() == ORIGIN and full["LULC"].shape == (150, 97)


def test_the_multiscales_attribute_lists_the_levels(categorical):
    path, _ = categorical
    attrs = zarr.open_group(str(path), mode="r").attrs
    assert "d35379db-88df-4056-af3a-620245f8e347" in [c["uuid"] for c in attrs["zarr_conventions"]]
    layout = attrs["multiscales"]["layout"]
    assert [entry["asset"] for entry in layout] == ["LULC", "1", "2", "3"]
    assert [entry.get("derived_from") for entry in layout] == [None, "LULC", "1", "2"]
    assert [entry["transform"]["scale"] for entry in layout] == [[1.0, 1.0]] + [[2.0, 2.0]] * 3
    assert [entry["spatial:shape"] for entry in layout] == [[150, 97], [75, 49], [38, 25], [19, 13]]
    assert layout[2]["spatial:transform"] == [40.0, 0.0, 600000.0, 0.0, -40.0, 4200000.0]
    assert attrs["multiscales"]["resampling_method"] == "mode"
    level_attrs = zarr.open_group(str(path), path="2", mode="r").attrs
    assert level_attrs["spatial:shape"] == [38, 25] and level_attrs["spatial:transform"][0] == 40.0


class CountingStore(zarr.storage.WrapperStore):
    """Counts the bytes every read returns."""

    def __init__(self, store):
        super().__init__(store)
        self.bytes = 0

    async def get(self, key, prototype, byte_range=None):
        value = await self._store.get(key, prototype, byte_range)
        self.bytes += 0 if value is None else len(value)
        return value


def land_cover(block_info=None):
    """A chunk of a land-cover-like class map: fields of 300 x 170 px, 5 % of the pixels speckled with other classes
    (seeded by the chunk's place), so it compresses about 9x, as land cover does."""
    (row0, row1), (col0, col1) = block_info[None]["array-location"]
    rows, cols = np.arange(row0, row1)[:, None] // 300, np.arange(col0, col1)[None, :] // 170
    fields = (rows * 7 + cols * 3 + rows * cols) % 9 + 1
    rng = np.random.default_rng(row0 * 100_000 + col0)
    return np.where(rng.random(fields.shape) < 0.05, rng.integers(1, 10, fields.shape), fields).astype(np.uint8)


def test_the_coarsest_level_of_a_large_store_reads_a_sliver_of_its_bytes(tmp_path):
    side, chunk = 8192, 512
    classes = da.map_blocks(land_cover, chunks=((chunk,) * (side // chunk),) * 2, dtype=np.uint8)  # lazy
    attrs = {"flag_values": list(range(10)), "nodata": 0}
    path = write(tmp_path / "large.zarr", {"LULC": (("y", "x"), classes, attrs)}, side, side, chunk)
    report = overviews.build(path, progress=False)
    assert [lvl.regions for lvl in report.levels] == [64, 16, 4, 1]  # 4096, 2048, 1024, 512 px

    def read(group):
        counting = CountingStore(zarr.storage.LocalStore(str(path), read_only=True))
        values = xr.open_zarr(counting, group=group, consolidated=False)["LULC"].values
        return values, counting.bytes

    coarsest, coarse_bytes = read("4")
    full, full_bytes = read(None)
    assert coarsest.shape == (512, 512) and full.shape == (side, side)
    assert coarse_bytes < 0.01 * full_bytes, (coarse_bytes, full_bytes)


def test_an_interrupted_build_resumes_where_it_stopped(categorical, tmp_path, monkeypatch):
    source, _ = categorical
    path = write(tmp_path / "again.zarr", {"LULC": (("y", "x"), xr.open_zarr(source)["LULC"].data,
                                                    {"flag_values": list(range(5)), "nodata": 0})}, 150, 97, 32)
    calls, lock, original = [0], threading.Lock(), overviews.block_mode

    def failing(values, nodata=None):
        with lock:
            calls[0] += 1
            if calls[0] == 9:  # a chunk of level 1 (its 6 chunks read 20 pieces)
                raise RuntimeError("a worker died")
        return original(values, nodata)

    monkeypatch.setattr(overviews, "block_mode", failing)
    with pytest.raises(RuntimeError, match="a worker died"):
        overviews.build(path, progress=False)
    assert "multiscales" not in zarr.open_group(str(path), mode="r").attrs  # not declared before it is complete
    monkeypatch.setattr(overviews, "block_mode", original)
    report = overviews.build(path, progress=False)
    first = report.levels[0]
    assert first.skipped >= 1 and first.written >= 1 and first.written + first.skipped == first.regions
    for number in (1, 2, 3):
        np.testing.assert_array_equal(level(path, number, "LULC"), level(source, number, "LULC"))
    again = overviews.build(path, progress=False)
    assert sum(lvl.written for lvl in again.levels) == 0


def test_tokens_and_incomplete_stores_are_refused(tmp_path):
    tokens = da.from_array(np.arange(64 * 64, dtype=np.int32).reshape(64, 64))
    path = write(tmp_path / "tokens.zarr", {"tokens": (("y", "x"), tokens, {"product": "tokens", "nodata": -1})},
                 64, 64, 16)
    with pytest.raises(OptionError, match="detokenize"):
        overviews.build(path, progress=False)
    zarr.open_array(str(path), path="xterramind/done", mode="r+")[0, 0] = 0
    with pytest.raises(StoreError, match="run the same to_zarr call again"):
        overviews.build(path, progress=False)
    with pytest.raises(StoreError, match="no store"):
        overviews.build(tmp_path / "nothing.zarr")


def test_to_zarr_builds_the_overviews_when_asked_and_refuses_a_non_boolean(categorical, tmp_path):
    """``to_zarr(..., overviews=True)`` gives the store ``build`` gives; a rerun of the same call redoes nothing."""
    source, _ = categorical
    result = xterramind.open(source)[["LULC"]].chunk({"y": 32, "x": 32})
    result.terramind.to_zarr(tmp_path / "again.zarr", overviews=True, progress=False)
    built = zarr.open_group(str(source), mode="r").attrs["multiscales"]
    assert zarr.open_group(str(tmp_path / "again.zarr"), mode="r").attrs["multiscales"]["layout"] == built["layout"]
    for number in (1, 2):
        np.testing.assert_array_equal(level(tmp_path / "again.zarr", number, "LULC"), level(source, number, "LULC"))
    with pytest.raises(OptionError, match="overviews must be True or False"):
        result.terramind.to_zarr(tmp_path / "other.zarr", overviews="yes", progress=False)
    assert not (tmp_path / "other.zarr").exists()
