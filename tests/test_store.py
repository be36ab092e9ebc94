"""Zarr stores: real clients read them back georeferenced; interrupted writes resume; nothing is overwritten silently."""

import json

import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
import zarr

import xterramind
from xterramind import executor, verb
from xterramind.errors import InputError
from xterramind.grid import Tiling
from xterramind.models.handle import TerraMindModel
from xterramind.store import StoreError


@pytest.fixture(scope="module")
def result(cube):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    return cube.terramind.embed(model, chunks=12)  # 3 x 3 regions


@pytest.fixture(scope="module")
def expected(result):
    return result.values


def test_v3_store_reads_back_with_xarray_and_rioxarray(result, expected, tmp_path):
    report = result.terramind.to_zarr(tmp_path / "emb.zarr", zarr_format=3)
    assert (report.regions, report.written, report.skipped) == (9, 9, 0)
    stored = xr.open_zarr(tmp_path / "emb.zarr", decode_coords="all")["embeddings"]
    np.testing.assert_array_equal(stored.values, expected)
    assert stored.rio.crs == result.rio.crs and stored.rio.transform() == result.rio.transform()
    assert stored.attrs["model"] == "terramind_micro" and stored.attrs["weights"] == "random"
    assert stored.encoding["chunks"] == (64, 12, 12)


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
    original = verb.run_region

    def failing_after_four(*windows, **kwargs):
        calls.append(kwargs["region"])
        if len(calls) > 4:
            raise RuntimeError("simulated crash")
        return original(*windows, **kwargs)

    monkeypatch.setattr(verb, "run_region", failing_after_four)
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    with pytest.raises(RuntimeError, match="simulated crash"):
        cube.terramind.embed(model, chunks=12).terramind.to_zarr(store, progress=False)
    done_before = int((zarr.open_array(str(store), path="xterramind/done")[...] > 0).sum())
    assert 1 <= done_before < 9

    monkeypatch.setattr(verb, "run_region", lambda *w, **k: (calls.append(k["region"]), original(*w, **k))[1])
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


def _arrays(group, prefix=""):
    """Every array of a zarr group, subgroups included: (path, array)."""
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Group):
            yield from _arrays(node, f"{path}/")
        else:
            yield path, node


FLOATS = {2: {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 2, "blocksize": 0},  # 2: bit shuffle
          3: {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle", "blocksize": 0}}}
INTEGERS = {2: {"id": "zstd", "level": 1}, 3: {"name": "zstd", "configuration": {"level": 1, "checksum": False}}}
LEDGER = {2: {"id": "zstd", "level": 3}, 3: {"name": "zstd", "configuration": {"level": 3, "checksum": False}}}


def _compressor(store, path, zarr_format):
    """The compressor of one array, read from the store's own metadata files, not from zarr-python's view of them."""
    if zarr_format == 2:
        return json.loads((store / path / ".zarray").read_text())["compressor"]
    codecs = json.loads((store / path / "zarr.json").read_text())["codecs"]
    assert codecs[0]["name"] in ("bytes", "vlen-utf8") and len(codecs) == 2, codecs  # a serializer, one compressor
    compressor = codecs[1]
    compressor.get("configuration", {}).pop("typesize", None)  # blosc's: the dtype's size
    return compressor


@pytest.fixture(scope="module")
def kinds(result):
    """A lazy result with a variable of each kind the store writes: floats of two widths, integers of three,
    and a float packed by CF encodings into int16 (scale, offset, fill) with NaN where it is masked."""
    first = result.isel(embedding=0, drop=True)
    dataset = xr.Dataset({
        "embeddings": result, "half": result.astype(np.float16), "signed": (result * 40).astype(np.int8),
        "classes": (first * 3).clip(0, 9).astype(np.uint8), "tokens": (first * 1e4).astype(np.int32),
        "packed": result.isel(embedding=1, drop=True).where(first > -0.5),
    })
    dataset["packed"].encoding = {"dtype": "int16", "scale_factor": 1e-3, "add_offset": 0.5, "_FillValue": -32768}
    return dataset


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_each_kind_of_variable_is_written_with_its_measured_codec(kinds, tmp_path, zarr_format):
    store = tmp_path / "kinds.zarr"
    kinds.terramind.to_zarr(store, zarr_format=zarr_format, progress=False)
    arrays = dict(_arrays(zarr.open_group(str(store), mode="r")))
    assert set(arrays) == {*kinds.data_vars, "embedding", "x", "y", "spatial_ref", "xterramind/done"}
    floats = {"embeddings", "half", "x", "y"}  # the packed float is stored as int16: an integer
    for path in arrays:
        wanted = LEDGER if path == "xterramind/done" else FLOATS if path in floats else INTEGERS
        assert _compressor(store, path, zarr_format) == wanted[zarr_format], path


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_variables_cf_packing_is_written_as_xarray_writes_it(kinds, tmp_path, zarr_format):
    packed = kinds[["packed"]]
    packed.terramind.to_zarr(tmp_path / "ours.zarr", zarr_format=zarr_format, progress=False)
    packed.to_zarr(tmp_path / "xarray.zarr", zarr_format=zarr_format, consolidated=False)  # xarray's own
    ours, theirs = (xr.open_zarr(tmp_path / f"{name}.zarr", consolidated=False)["packed"]
                    for name in ("ours", "xarray"))
    assert str(zarr.open_array(str(tmp_path / "ours.zarr"), path="packed").dtype) == "int16"
    np.testing.assert_array_equal(ours.values, theirs.values)  # NaN where masked, the same rounding
    assert np.isnan(ours.values).any() and np.nanmax(abs(ours.values - packed["packed"].values)) <= 0.5e-3 + 1e-6
    other = packed.copy()
    other["packed"].encoding = {**packed["packed"].encoding, "scale_factor": 1e-2}
    with pytest.raises(StoreError, match="packing"):  # a resume never mixes two packings in one store
        other.terramind.to_zarr(tmp_path / "ours.zarr", zarr_format=zarr_format)


def test_each_kind_of_variable_reads_back_bit_identical_with_xarray_and_gdal(kinds, tmp_path):
    store = tmp_path / "kinds.zarr"
    kinds.terramind.to_zarr(store, progress=False)  # the default format, which rasterio's GDAL reads
    expected = kinds.compute()
    stored = xr.open_zarr(store, decode_coords="all", mask_and_scale=False)
    for name, variable in expected.data_vars.items():
        raw = zarr.open_array(str(store), path=name)[...]
        np.testing.assert_array_equal(stored[name].values, raw, err_msg=name)
        assert stored[name].dtype == raw.dtype == (np.int16 if name == "packed" else variable.dtype), name
        if name != "packed":
            np.testing.assert_array_equal(raw, variable.values, err_msg=name)
        with rasterio.open(f'ZARR:"{store}":/{name}') as dataset:
            assert dataset.crs == kinds.rio.crs and dataset.transform == kinds.rio.transform(), name
            np.testing.assert_array_equal(dataset.read(), raw.reshape(-1, *raw.shape[-2:]), err_msg=name)
            if name == "packed":
                assert dataset.scales == (1e-3,) and dataset.offsets == (0.5,) and dataset.nodata == -32768


def test_the_default_store_opens_with_this_environments_gdal_and_xterramind_open(result, expected, tmp_path):
    store = tmp_path / "emb.zarr"
    result.terramind.to_zarr(store, progress=False)  # the default format
    with rasterio.open(f'ZARR:"{store}":/embeddings') as dataset:  # rasterio's own GDAL (3.10 here)
        assert dataset.crs == result.rio.crs and dataset.transform == result.rio.transform()
        np.testing.assert_array_equal(dataset.read(1), expected[0])
    band = rioxarray.open_rasterio(store, variable="embeddings")
    assert band.rio.crs == result.rio.crs and band.rio.transform() == result.rio.transform()
    opened = xterramind.open(store)  # what the README, the demo and the docs say
    assert isinstance(opened, xr.DataArray) and opened.name == "embeddings" and opened.dims == result.dims
    assert opened.rio.crs == result.rio.crs and opened.rio.transform() == result.rio.transform()
    assert "spatial_ref" in opened.coords and opened.chunks is not None
    np.testing.assert_array_equal(opened.values, expected)
    for key in ("model", "weights", "modalities", "xterramind_version", "product"):
        assert opened.attrs[key] == result.attrs[key]
    root = xr.open_zarr(store)  # the provenance at Dataset level too
    assert root.attrs["model"] == "terramind_micro" and root.attrs["weights"] == "random"


def test_xterramind_open_gives_generated_products_and_zones_of_area_runs(cube, micro, lulc, tmp_path):
    store = tmp_path / "lulc.zarr"
    cube.terramind.generate("LULC", micro, seed=7).terramind.to_zarr(store, progress=False)
    opened = xterramind.open(store)
    assert isinstance(opened, xr.Dataset) and set(opened.data_vars) == {"LULC", "LULC_probability"}
    assert opened.rio.crs == cube.rio.crs and opened.LULC.rio.transform() == cube.rio.transform()
    np.testing.assert_array_equal(opened.LULC.values, lulc.LULC.values)
    assert opened.attrs["targets"] == ["LULC"]

    from xterramind.planner import plan_grid
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    grid = xterramind.modalities.grid_of(cube, "cube")
    with _in_process_client() as client:
        report = run(plan_grid(grid, region=24), CubeSource(cube), "embed", micro, tmp_path / "run.zarr",
                     progress_bar=False, client=client)
        client.cluster.close()
    assert report.written == report.regions == 4
    zone = xterramind.open(tmp_path / "run.zarr")  # one zone: no need to name it
    assert zone.name == "embeddings" and zone.rio.crs == cube.rio.crs
    with pytest.raises(StoreError, match="zone="):
        xterramind.open(tmp_path / "run.zarr", zone="utm33n")


def test_xterramind_open_refuses_what_is_not_a_store(result, tmp_path):
    with pytest.raises(StoreError, match="no store"):
        xterramind.open(tmp_path / "nothere.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(StoreError, match="not a zarr store written by xterramind"):
        xterramind.open(tmp_path / "folder")
    plain = tmp_path / "plain.zarr"  # a zarr store written by xarray itself opens georeferenced too
    result.to_dataset().to_zarr(plain, zarr_format=2)
    assert xterramind.open(plain)["embeddings"].rio.crs == result.rio.crs
    zarr.open_group(str(tmp_path / "empty.zarr"), mode="w")
    with pytest.raises(StoreError, match="holds no arrays"):
        xterramind.open(tmp_path / "empty.zarr")
    result.terramind.to_zarr(tmp_path / "emb.zarr", progress=False)
    with pytest.raises(StoreError, match="zone="):
        xterramind.open(tmp_path / "emb.zarr", zone="utm18n")


# -- one forward pass per tile, whatever the number of outputs (every verb, every write path) -------------

FORWARD = {"encode": 0, "generate": 0, "tokenize": 1, "detokenize": 1}  # method -> position of its batch argument


@pytest.fixture
def forward_tiles(monkeypatch):
    """Tiles through each of the model's forward methods, counted (thread-safe: workers run concurrently)."""
    import threading

    counts, lock = dict.fromkeys(FORWARD, 0), threading.Lock()
    for name, position in FORWARD.items():
        original = getattr(TerraMindModel, name)

        def counting(self, *args, _original=original, _name=name, _position=position, **kwargs):
            batch = args[_position]
            with lock:
                counts[_name] += len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TerraMindModel, name, counting)
    return counts


def _in_process_client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0")
    return Client(cluster)


def _verbs(cube, micro):
    """Each verb on one region of the scene: its result and its forward method."""
    small = cube.isel(y=slice(0, 416), x=slice(0, 416))
    tokens = small.terramind.tokenize("S2L2A", micro, chunks=26).compute()
    tokens = tokens.where(tokens < 0, tokens % 4375).chunk()  # ids in the LULC vocabulary, nodata kept
    return {
        "embed": (small.terramind.embed(micro, chunks=26), "encode"),
        "tokenize": (small.terramind.tokenize("S2L2A", micro, chunks=26), "tokenize"),
        "generate": (small.terramind.generate(["LULC", "DEM"], micro, seed=1, timesteps=1, chunks=26), "generate"),
        "detokenize": (tokens.terramind.detokenize("LULC", micro, chunks=26), "detokenize"),
    }


@pytest.mark.parametrize("verb", ["embed", "tokenize", "generate", "detokenize"])
@pytest.mark.parametrize("where", ["local", "cluster"])
def test_to_zarr_runs_each_tile_once_whatever_the_outputs(cube, micro, forward_tiles, tmp_path, verb, where):
    result, method = _verbs(cube, micro)[verb]
    tiles = Tiling(xterramind.modalities.grid_of(cube.isel(y=slice(0, 416), x=slice(0, 416)), "cube")).tile_count
    assert tiles == 9  # one region of 26 x 26 tokens: lattice tiles at 0, 11 and 12 tokens a side
    forward_tiles[method] = 0
    client = _in_process_client() if where == "cluster" else None
    try:
        result.compute()
        assert forward_tiles[method] == tiles
        forward_tiles[method] = 0
        result.terramind.to_zarr(tmp_path / "out.zarr", progress=False)
        assert forward_tiles[method] == tiles  # LULC + LULC_probability + DEM: still one pass per tile
    finally:
        if client is not None:
            client.close()
            client.cluster.close()
    assert len(result.data_vars if isinstance(result, xr.Dataset) else [result]) >= 1


def test_area_runs_run_each_tile_once_whatever_the_outputs(cube, micro, forward_tiles, tmp_path):
    from xterramind.planner import plan_grid
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    small = cube.isel(y=slice(0, 416), x=slice(0, 416))
    plan = plan_grid(xterramind.modalities.grid_of(small, "cube"), region=26)
    with _in_process_client() as client:
        report = run(plan, CubeSource(small), "generate", micro, tmp_path / "lulc.zarr", client=client,
                     targets=["LULC"], seed=1, progress_bar=False)
        client.cluster.close()
    # 2 x 2 regions of 24 tokens that each gather the 3 x 3 to 2 x 2 tiles covering them (25 in all, the report's
    # count): the 9 tiles of the lattice run once each, not once per output nor once per region covering them
    assert report.written == report.regions == 4 and report.tiles == 25 and forward_tiles["generate"] == 9


# -- Ctrl-C ----------------------------------------------------------------------------------------------

INTERRUPTED_WRITE = """
import itertools, os, signal, sys, time
import xterramind
from xterramind.models.handle import TerraMindModel

encode, calls, gate = TerraMindModel.encode, itertools.count(1), sys.argv[2]


def paced(self, *args, **kwargs):  # a forward pass: ~0.4 s; from the 4th on, only once Ctrl-C has been seen
    number = next(calls)
    time.sleep(0.4)
    while number > 3 and not os.path.exists(gate):  # so the write cannot end first, however loaded the machine
        time.sleep(0.02)
    return encode(self, *args, **kwargs)


def seen(signum, frame):  # Python's own Ctrl-C, once the gate is open
    open(gate, "w").close()
    signal.default_int_handler(signum, frame)


TerraMindModel.encode = paced
signal.signal(signal.SIGINT, seen)
model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
embeddings = xterramind.open_sample().terramind.embed(model, chunks=6)  # 25 regions
print(embeddings.terramind.to_zarr(sys.argv[1], progress=True))
"""


def _done(store) -> int:
    """Regions marked complete, counted from the ledger's chunk files (safe to read while it is written)."""
    folder = store / "xterramind" / "done"
    return sum(1 for f in folder.iterdir() if not f.name.startswith(".")) if folder.exists() else 0


def test_ctrl_c_stops_a_write_within_a_region_and_the_same_call_resumes(result, micro, cube, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "emb.zarr"
    script = tmp_path / "write.py"
    script.write_text(INTERRUPTED_WRITE)
    gate = tmp_path / "signalled"
    process = subprocess.Popen([sys.executable, str(script), str(store), str(gate)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _done(store) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    at_signal = _done(store)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    done = _done(store)
    assert process.returncode != 0 and "regions written" not in out  # it stopped, not finished
    assert done <= at_signal + executor.local_threads()  # the regions in flight finish; nothing new starts
    assert f"interrupted after {done} of 25 regions; run the same call again to resume" in err
    assert "Interrupted" in err and "executor.py" not in err.split("Interrupted")[-1]

    report = cube.terramind.embed(micro, chunks=6).terramind.to_zarr(store, progress=False)  # the same call
    assert (report.skipped, report.written) == (done, 25 - done)
    uninterrupted = cube.terramind.embed(micro, chunks=6).terramind.to_zarr(tmp_path / "whole.zarr", progress=False)
    assert uninterrupted.written == 25
    np.testing.assert_array_equal(xterramind.open(store).values, xterramind.open(tmp_path / "whole.zarr").values)


# -- overwrite=True replaces only what xterramind wrote --------------------------------------------------


def test_overwrite_never_deletes_what_xterramind_did_not_write(result, tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(folder)
    for path in (".", "", folder, tmp_path):  # the working folder and what holds it
        with pytest.raises(StoreError, match="current folder"):
            result.terramind.to_zarr(path, overwrite=True)
    other = tmp_path / "other.zarr"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(StoreError, match="did not write"):
        result.terramind.to_zarr(other, overwrite=True)
    (tmp_path / "file.zarr").write_text("a file")
    with pytest.raises(StoreError, match="is a file"):
        result.terramind.to_zarr(tmp_path / "file.zarr", overwrite=True)
    assert (folder / "thesis.tex").read_text() == "years of work"
    assert (other / "notes.txt").read_text() == "keep" and (tmp_path / "file.zarr").read_text() == "a file"
    (tmp_path / "empty.zarr").mkdir()  # an empty folder and an earlier store are replaced
    assert result.terramind.to_zarr(tmp_path / "empty.zarr", overwrite=True, progress=False).written == 9
    assert result.terramind.to_zarr(tmp_path / "empty.zarr", overwrite=True, progress=False).written == 9


def test_a_store_is_never_overwritten_with_a_result_read_from_it(result, tmp_path):
    store = tmp_path / "emb.zarr"
    result.terramind.to_zarr(store, progress=False)
    expected = xterramind.open(store).values
    for opened in (xterramind.open(store), xr.open_zarr(store, decode_coords="all")):
        with pytest.raises(StoreError, match="reads from"):
            opened.terramind.to_zarr(store, overwrite=True)
    np.testing.assert_array_equal(xterramind.open(store).values, expected)  # untouched


def test_overwriting_exports_and_area_runs_spares_other_folders(cube, micro, tmp_path):
    from xterramind.planner import plan_grid
    from xterramind.retrieval import export
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "data.csv").write_text("1,2")
    embeddings = cube.terramind.embed(micro, chunks=12)
    with pytest.raises(StoreError, match="did not write"):
        export(embeddings, keep, cell=32, overwrite=True, index=None)
    plan = plan_grid(xterramind.modalities.grid_of(cube, "cube"), region=24)
    with pytest.raises(StoreError, match="did not write"):
        run(plan, CubeSource(cube), "embed", micro, keep, overwrite=True, progress_bar=False)
    assert (keep / "data.csv").read_text() == "1,2"
    assert export(embeddings, tmp_path / "cells", cell=32, index=None).rows
    assert export(embeddings, tmp_path / "cells", cell=32, index=None, overwrite=True).rows  # its own: replaced


def test_an_interrupted_overwrite_says_how_to_resume_it(result, tmp_path, monkeypatch):
    from xterramind import executor
    from xterramind.errors import Interrupted

    finished, run_here = [], executor._run_here

    def until_the_third(job, retries):
        if len(finished) == 2:
            raise KeyboardInterrupt  # as Ctrl-C reaching the writing loop
        finished.append(run_here(job, retries))
        return finished[-1]

    monkeypatch.setattr(executor, "local_threads", lambda: 1)
    monkeypatch.setattr(executor, "_run_here", until_the_third)
    with pytest.raises(Interrupted, match="after 2 of 9 regions; run it again without overwrite=True to resume"):
        result.terramind.to_zarr(tmp_path / "emb.zarr", overwrite=True, progress=False)
    monkeypatch.undo()
    report = result.terramind.to_zarr(tmp_path / "emb.zarr", progress=False)  # as it says
    assert (report.skipped, report.written) == (2, 7)


def test_a_region_is_empty_only_when_not_one_of_its_values_is_finite_or_unlike_the_fill(result, tmp_path):
    """The emptiness check looks a few rows at a time: a value in a block's very last element still counts."""
    last = (-1, result.chunks[1][0] - 1, result.chunks[2][0] - 1)  # the last element of the first region's block
    keep = np.zeros(result.shape, dtype=bool)
    keep[last] = True
    kept = result.where(xr.DataArray(keep, dims=result.dims))
    classes = (kept.notnull() * 3).astype(np.uint8).rename("classes")
    classes.encoding["_FillValue"] = 0  # elsewhere the fill
    for lazy, name in ((kept, "floats.zarr"), (classes, "ints.zarr")):
        report = lazy.terramind.to_zarr(tmp_path / name, progress=False)
        assert (report.written, report.empty) == (9, 8)
