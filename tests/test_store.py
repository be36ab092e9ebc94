"""Zarr stores: real clients read them back georeferenced; interrupted writes resume; nothing is overwritten silently."""

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
import zarr

import xterramind
from xterramind import engine
from xterramind.errors import InputError
from xterramind.store import StoreError


@pytest.fixture(scope="module")
def cube():
    return xterramind.open_sample()


@pytest.fixture(scope="module")
def result(cube):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    return cube.terramind.embed(model, chunks=12)  # 3 x 3 regions


@pytest.fixture(scope="module")
def expected(result):
    return result.values


def test_v3_store_reads_back_with_xarray_and_rioxarray(result, expected, tmp_path):
    report = result.terramind.to_zarr(tmp_path / "emb.zarr")
    assert (report.regions, report.written, report.skipped) == (9, 9, 0)
    stored = xr.open_zarr(tmp_path / "emb.zarr", decode_coords="all")["embeddings"]
    np.testing.assert_array_equal(stored.values, expected)
    assert stored.rio.crs == result.rio.crs and stored.rio.transform() == result.rio.transform()
    assert stored.attrs["model"] == "terramind_micro" and stored.attrs["weights"] == "random"
    assert stored.encoding["chunks"] == (64, 12, 12)
    codecs = zarr.open_array(str(tmp_path / "emb.zarr"), path="embeddings").metadata.codecs
    assert any(type(c).__name__ == "ZstdCodec" for c in codecs)


def test_v2_store_is_georeferenced_for_gdal(result, expected, tmp_path):
    result.terramind.to_zarr(tmp_path / "emb.zarr", zarr_format=2)
    with rasterio.open(f'ZARR:"{tmp_path / "emb.zarr"}":/embeddings') as dataset:
        assert dataset.crs.to_epsg() == 32618
        assert dataset.transform == result.rio.transform()
        assert dataset.count == 64 and dataset.shape == (30, 30)
        np.testing.assert_array_equal(dataset.read(5), expected[4])
    stored = xr.open_zarr(tmp_path / "emb.zarr", decode_coords="all")["embeddings"]
    assert stored.rio.crs.to_epsg() == 32618


def test_an_interrupted_write_resumes_with_only_the_missing_regions(result, expected, tmp_path, monkeypatch, cube):
    store = tmp_path / "emb.zarr"
    calls = []
    original = engine.embed_region

    def failing_after_four(*windows, **kwargs):
        calls.append(kwargs["region"])
        if len(calls) > 4:
            raise RuntimeError("simulated crash")
        return original(*windows, **kwargs)

    monkeypatch.setattr(engine, "embed_region", failing_after_four)
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    with pytest.raises(RuntimeError, match="simulated crash"):
        cube.terramind.embed(model, chunks=12).terramind.to_zarr(store, progress=False)
    done_before = int((zarr.open_array(str(store), path="xterramind/done")[...] > 0).sum())
    assert 1 <= done_before < 9

    monkeypatch.setattr(engine, "embed_region", lambda *w, **k: (calls.append(k["region"]), original(*w, **k))[1])
    calls.clear()
    report = cube.terramind.embed(model, chunks=12).terramind.to_zarr(store)
    assert report.written == 9 - done_before == len(calls) and report.skipped == done_before
    np.testing.assert_array_equal(xr.open_zarr(store)["embeddings"].values, expected)


def test_an_existing_store_is_never_overwritten_silently(result, cube, tmp_path):
    store = tmp_path / "emb.zarr"
    result.terramind.to_zarr(store)
    other_model = xterramind.load_model("terramind_micro", weights="random", seed=1, device="cpu")
    other = cube.terramind.embed(other_model, chunks=12)
    with pytest.raises(StoreError, match="different result") as error:
        other.terramind.to_zarr(store)
    assert "overwrite=True" in str(error.value)
    with pytest.raises(StoreError, match="resume=True"):
        result.terramind.to_zarr(store, resume=False)
    np.testing.assert_array_equal(xr.open_zarr(store)["embeddings"].values, result.values)  # untouched
    other.terramind.to_zarr(store, overwrite=True)
    np.testing.assert_array_equal(xr.open_zarr(store)["embeddings"].values, other.values)


def test_a_folder_that_is_not_an_xterramind_store_is_refused(result, tmp_path):
    (tmp_path / "emb.zarr").mkdir()
    (tmp_path / "emb.zarr" / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not an xterramind store"):
        result.terramind.to_zarr(tmp_path / "emb.zarr")
    assert (tmp_path / "emb.zarr" / "precious.txt").read_text() == "keep me"


def test_all_nodata_input_is_reported(cube, tmp_path):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu")
    empty = (cube * 0).rio.write_nodata(0)
    with pytest.raises(InputError, match="no valid pixel"):
        empty.terramind.embed(model, chunks=12).terramind.to_zarr(tmp_path / "empty.zarr")
    with pytest.raises(InputError, match="no valid pixel"):  # in memory: before anything runs
        empty.compute().terramind.embed(model)


def test_bad_write_arguments(result, tmp_path):
    with pytest.raises(InputError, match="zarr_format"):
        result.terramind.to_zarr(tmp_path / "a.zarr", zarr_format=4)
    with pytest.raises(InputError, match="not dask-backed"):
        result.compute().terramind.to_zarr(tmp_path / "b.zarr")
