"""Area runs on a real multi-process Dask cluster: results, resources, lost workers, a killed driver, graph size."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
import zarr
from affine import Affine
from distributed import Client, Nanny, Scheduler, SpecCluster

import xterramind
from tests.stac_catalogue import FIXTURES, catalogue, l1c_files, lonlat_bbox, make_item
from tests.tasks import task_config, write_task
from xterramind import cli, runner
from xterramind.config import load_config
from xterramind.errors import ConfigError, InputError, OptionError
from xterramind.modalities import grid_of
from xterramind.planner import plan_area, plan_grid
from xterramind.sources import CubeSource, StacSource, SyntheticSource
from xterramind.store import StoreError

AREA = (9.0, 45.0, 9.12, 45.08)  # about 9.5 x 9 km in zone 32
LAND = (9.0, 45.0, 9.06, 45.08)  # the western half has data, the rest is "sea"


@pytest.fixture(scope="module")
def cluster(distributed_leftovers_undone):
    """Two worker processes; only the first offers the (fake) GPU resource."""
    workers = {"gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
               "cpu": {"cls": Nanny, "options": {"nthreads": 1}}}
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as spec:
        yield spec


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as connected:
        connected.wait_for_workers(2)
        yield connected


@pytest.fixture(scope="module")
def model():
    return xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def reference(client, model, tmp_path_factory):
    """An uninterrupted run: 20 regions, 10 of them over land."""
    store = tmp_path_factory.mktemp("reference") / "area.zarr"
    plan = plan_area(AREA, region=24)
    report = runner.run(plan, SyntheticSource(land=LAND), "embed", model, store, client=client, gpu=False)
    return plan, store, report


def _embeddings(store, zone="utm32n") -> np.ndarray:
    return xr.open_zarr(store, group=zone)["embeddings"].values


def _marked(store, zone="utm32n") -> int:
    """Regions marked done in the ledger (0 while the store is still being created)."""
    try:
        return int((zarr.open_array(str(store), path=f"{zone}/xterramind/done", mode="r")[...] > 0).sum())
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError, zarr.errors.ArrayNotFoundError):
        return 0


def test_a_run_equals_the_accessor_on_the_same_pixels(reference, model):
    plan, store, report = reference
    zone = plan.zones[0]
    assert report.regions == len(zone.region_indices) == report.written + report.empty and not report.failed
    assert report.empty > 0 and report.written > 0  # the sea was skipped, the land computed
    cube = SyntheticSource(land=LAND).read(zone.grid, ((0, zone.grid.height), (0, zone.grid.width)))
    expected = cube.terramind.embed(model, chunks=zone.region_size).compute(scheduler="threads")
    stored = xr.open_zarr(store, group=zone.name, decode_coords="all")["embeddings"]
    np.testing.assert_allclose(stored.values, expected.values, atol=1e-5, rtol=0)
    assert stored.rio.crs.to_epsg() == 32632 and stored.rio.transform() == expected.rio.transform()
    assert zone.grid.transform.c % (zone.region_size * 16 * 10) == 0  # the grid sits on the zone's region lattice


def test_an_opened_cube_runs_on_its_own_grid(client, model, tmp_path):
    cube = xterramind.open_sample()
    plan = plan_grid(grid_of(cube, "sample"), region=24)
    report = runner.run(plan, CubeSource(cube), "generate", model, tmp_path / "lulc.zarr", client=client, targets="LULC",
                        seed=3, zarr_format=2)
    assert report.written == 4 and report.regions == 4  # 30 x 30 tokens in regions of 24
    expected = cube.terramind.generate("LULC", model, seed=3, chunks=24).compute(scheduler="threads")
    assert plan.zones[0].name == "utm18n"
    stored = xr.open_zarr(tmp_path / "lulc.zarr", group="utm18n")
    np.testing.assert_array_equal(stored.LULC.values, expected.LULC.values)
    with rasterio.open(f'ZARR:"{tmp_path / "lulc.zarr"}":/utm18n/LULC') as dataset:  # GDAL reads the zone's group
        assert dataset.crs.to_epsg() == 32618 and dataset.transform == expected.rio.transform()
        np.testing.assert_array_equal(dataset.read(1), expected.LULC.values)


def test_tokens_of_regions_without_data_read_back_as_nodata(client, model, tmp_path):
    plan = plan_area(AREA, region=24)
    report = runner.run(plan, SyntheticSource(land=LAND), "tokenize", model, tmp_path / "tokens.zarr", client=client,
                        gpu=False, modality="S2L2A")
    assert report.empty > 0 and report.written > 0
    tokens = xr.open_zarr(tmp_path / "tokens.zarr", group="utm32n")["tokens"].values
    size = plan.zones[0].region_size
    for outcome in report.outcomes:
        row, col = outcome.index
        block = tokens[row * size:(row + 1) * size, col * size:(col + 1) * size]
        assert (block == -1).all() if outcome.tiles == 0 else (block >= 0).any()


def test_a_tokenized_area_is_detokenized_by_a_run_as_by_the_accessor(client, model, tmp_path):
    """The runner runs all four verbs: detokenize reads a token store (its token grid) and writes pixels on
    the plan's pixel grid, equal to the accessor's detokenize of the same tokens; regions of the sea (tokens
    -1) skip the model and read back as nodata."""
    plan = plan_area(AREA, region=24)
    runner.run(plan, SyntheticSource(land=LAND), "tokenize", model, tmp_path / "tokens.zarr", client=client,
               gpu=False, modality="S2L2A")
    tokens = xterramind.open(tmp_path / "tokens.zarr")
    tokens = tokens.where(tokens < 0, tokens % 4375).astype("int32")  # ids in the LULC vocabulary, nodata kept
    pixels = plan_grid(grid_of(tokens, "tokens").refined(16), region=24)
    assert pixels.zones[0].grid.same_as(plan.zones[0].grid)
    report = runner.run(pixels, CubeSource(tokens), "detokenize", model, tmp_path / "lulc.zarr", client=client,
                        gpu=False, modality="LULC", seed=2)
    assert report.regions == plan.regions and report.written > 0 and report.empty > 0 and not report.failed
    stored = xterramind.open(tmp_path / "lulc.zarr")
    expected = tokens.chunk(24).terramind.detokenize("LULC", model, seed=2, chunks=24).compute(scheduler="threads")
    np.testing.assert_array_equal(stored.LULC.values, expected.LULC.values)
    # the worker sums in another thread count than this process: equal to float32 rounding
    np.testing.assert_allclose(stored.LULC_probability.values, expected.LULC_probability.values, rtol=0, atol=1e-6)
    assert (stored.LULC.values == 0).any() and (stored.LULC.values > 0).any()  # the sea is nodata (0), land classes


class _RecordingClient:
    """The client, noting which task function was submitted with which resource restriction."""

    def __init__(self, client):
        self._client, self.restrictions = client, {}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def submit(self, function, *args, **kwargs):  # every stage is submitted as executor._timed(stage function, ...)
        stage = getattr(args[0], "func", args[0])
        self.restrictions.setdefault(getattr(stage, "__name__", type(stage).__name__), set()).add(
            str(kwargs.get("resources")))
        return self._client.submit(function, *args, **kwargs)


def test_model_tasks_run_only_on_the_gpu_worker(reference, cluster, client, model, tmp_path):
    plan, expected_store, _ = reference
    recording = _RecordingClient(client)
    report = runner.run(plan, SyntheticSource(land=LAND), "embed", model, tmp_path / "gpu.zarr", client=recording)
    gpu = cluster.workers["gpu"].worker_address
    assert report.written and {outcome.worker for outcome in report.outcomes} == {gpu}
    np.testing.assert_array_equal(_embeddings(tmp_path / "gpu.zarr"), _embeddings(expected_store))
    # reading and writing (compression) never hold the GPU; only the model does
    assert recording.restrictions == {"SourceReader": {"None"}, "model_stage": {"{'GPU': 1}"}, "write_stage": {"None"}}


def test_a_worker_killed_mid_run_changes_nothing(reference, cluster, client, model, tmp_path):
    plan, expected_store, _ = reference
    store = tmp_path / "killed.zarr"
    victim = cluster.workers["cpu"].worker_address
    pid = client.run(os.getpid, workers=[victim])[victim]
    killed_at = []

    def kill_when_started():
        while not (store / "utm32n").exists() or _marked(store) < 2:
            time.sleep(0.02)
        killed_at.append(_marked(store))
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    report = runner.run(plan, SyntheticSource(land=LAND), "embed", model, store, client=client, gpu=False, in_flight=2)
    killer.join(timeout=5)
    assert killed_at and killed_at[0] < len(plan.zones[0].region_indices)  # the worker died with regions left to do
    assert not report.failed and report.written + report.empty == len(plan.zones[0].region_indices)
    np.testing.assert_array_equal(_embeddings(store), _embeddings(expected_store))
    client.wait_for_workers(2, timeout=60)  # the nanny brought a new worker process up
    assert victim not in client.scheduler_info()["workers"]


def test_a_failing_region_is_logged_and_retried_by_the_next_run(reference, client, model, tmp_path, caplog):
    plan, expected_store, _ = reference
    zone = plan.zones[0]
    broken_cell = tuple(int(v) for v in zone.region_indices[3])

    class FlakySource(SyntheticSource):  # defined here, so it travels to the workers by value
        def read(self, grid, window):
            if window == (zone.region(*broken_cell).y.window, zone.region(*broken_cell).x.window):
                raise OSError("the bucket said 503")
            return super().read(grid, window)

    store = tmp_path / "flaky.zarr"
    with caplog.at_level("INFO", logger="xterramind.run"):
        report = runner.run(plan, FlakySource(land=LAND), "embed", model, store, client=client, gpu=False, retries=0)
    assert report.failed == [("utm32n", broken_cell, "OSError: the bucket said 503")]
    assert f"region utm32n row {broken_cell[0]} col {broken_cell[1]} failed: OSError" in caplog.text
    assert "1 failed" in caplog.text and report.written + report.empty == len(zone.region_indices) - 1
    again = runner.run(plan, SyntheticSource(land=LAND), "embed", model, store, client=client, gpu=False)
    assert again.skipped == len(zone.region_indices) - 1 and again.written + again.empty == 1 and not again.failed
    np.testing.assert_array_equal(_embeddings(store), _embeddings(expected_store))


def _config(folder: Path, scheduler: str, **extra) -> Path:
    settings = {"area": list(AREA), "source": {"synthetic": {"modalities": ["S2L2A"], "land": list(LAND)}},
                "verb": "embed", "model": "terramind_micro", "weights": "random", "device": "cpu", "precision": "fp32",
                "output": "area.zarr", "region": 24, "cluster": scheduler, "gpu": False, "in_flight": 2} | extra
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_run_file_detokenizes_the_store_another_run_file_tokenized(client, tmp_path, monkeypatch):
    """``xterramind run`` with ``verb: detokenize`` and ``source: {cube: tokens.zarr}`` plans on the pixels the
    token grid decodes to and writes them: the command line's way to all four verbs."""
    from xterramind import cli

    monkeypatch.chdir(tmp_path)
    scheduler = client.scheduler.address
    small = [9.0, 45.0, 9.09, 45.03]  # 3 x 1 regions, land and sea
    tokenize = _config(tmp_path, scheduler, verb="tokenize", options={"modality": "S2L2A"}, output="tokens.zarr",
                       area=small)
    assert cli.main(["run", str(tokenize)]) == 0
    detokenize = _config(tmp_path, scheduler, verb="detokenize", source={"cube": "tokens.zarr"},
                         options={"modality": "S2L2A", "timesteps": 1, "seed": 4}, output="pixels.zarr", area=small)
    assert cli.main(["run", str(detokenize)]) == 0
    tokens, pixels = xterramind.open(tmp_path / "tokens.zarr"), xterramind.open(tmp_path / "pixels.zarr")
    assert pixels.S2L2A.shape[1:] == tuple(16 * side for side in tokens.shape)
    assert pixels.rio.transform() == tokens.rio.transform() * Affine.scale(1 / 16) and pixels.rio.crs == tokens.rio.crs
    sea = (tokens.values < 0).repeat(16, 0).repeat(16, 1)
    assert np.isnan(pixels.S2L2A.values[:, sea]).all() and np.isfinite(pixels.S2L2A.values[:, ~sea]).all()


PREDICT_TASK = {"classes": 3, "decoder": "FCNDecoder", "decoder_args": {"channels": 8, "num_convs": 4},
                "necks": [{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}],
                "class_names": ["land", "water", "cloud"]}


def test_a_predict_run_equals_the_accessor_and_a_run_file_names_the_task(client, tmp_path, monkeypatch):
    """``verb: predict`` with ``task: {config, checkpoint}``: the workers rebuild the fine-tuned model from its files
    and write the accessor's classes and probabilities, read back by xarray and GDAL."""
    config, checkpoint = write_task(tmp_path, task_config(**PREDICT_TASK))
    cube = xterramind.open_sample()
    task = xterramind.load_task(config, checkpoint, device="cpu")
    expected = cube.terramind.predict(task, chunks=24, probabilities="uint8").compute(scheduler="threads")
    plan = plan_grid(grid_of(cube, "sample"), region=24)
    report = runner.run(plan, CubeSource(cube), "predict", task, tmp_path / "direct.zarr", client=client, gpu=False,
                        probabilities="uint8")
    assert report.written == report.regions == 4 and not report.failed
    stored = xr.open_zarr(tmp_path / "direct.zarr", group="utm18n", mask_and_scale=False)  # uint8 as computed
    np.testing.assert_array_equal(stored.classes.values, expected.classes.values)
    # a worker of one thread may round a float's last bit otherwise, and a uint8 step with it
    quantized = stored.class_probability.values.astype(int) - expected.class_probability.values
    assert np.abs(quantized).max() <= 1 and (quantized != 0).mean() < 1e-4
    assert stored.classes.attrs["flag_meanings"] == "land water cloud"

    monkeypatch.chdir(tmp_path)
    cube.assign_attrs(long_name=tuple(cube.band.values)).rio.to_raster(tmp_path / "scene.tif")  # named bands
    west, south, east, north = cube.rio.transform_bounds("EPSG:4326")
    run_file = _config(tmp_path, client.scheduler.address, verb="predict", source={"cube": "scene.tif"},
                       area=[west, south, east, north], task={"config": config.name, "checkpoint": checkpoint.name},
                       output="flood.zarr")
    assert cli.main(["run", str(run_file)]) == 0
    with rasterio.open(f'ZARR:"{tmp_path / "flood.zarr"}":/utm18n/classes') as dataset:
        assert dataset.crs.to_epsg() == 32618 and dataset.transform == expected.rio.transform()
        np.testing.assert_array_equal(dataset.read(1), expected.classes.values)


def test_regions_an_area_does_not_touch_read_as_nodata_not_as_a_class(client, tmp_path):
    """A fine-tuned model's class 0 is a real class: the zone's regions outside the area get the classes' nodata
    (255), as regions without valid input do; the computed ones are the accessor's."""
    config, checkpoint = write_task(tmp_path, task_config(**PREDICT_TASK))
    cube, task = xterramind.open_sample(), xterramind.load_task(config, checkpoint, device="cpu")
    whole = plan_grid(grid_of(cube, "sample"), region=24)
    zone = whole.zones[0]
    plan = dataclasses.replace(whole, zones=[dataclasses.replace(zone, region_indices=zone.region_indices[:1])])
    report = runner.run(plan, CubeSource(cube), "predict", task, tmp_path / "part.zarr", client=client, gpu=False)
    assert report.written == 1
    classes = xr.open_zarr(tmp_path / "part.zarr", group=zone.name).classes.values
    size = zone.region_size * 16
    expected = cube.terramind.predict(task, chunks=24).classes.values
    np.testing.assert_array_equal(classes[:size, :size], expected[:size, :size])
    outside = np.ones(classes.shape, bool)
    outside[:size, :size] = False
    assert (classes[outside] == 255).all()


def test_a_run_with_overviews_builds_each_zones_levels_on_the_cluster(client, model, tmp_path):
    """``overviews=True`` (a run file's ``overviews: true``): once every region is written, each zone gets its
    coarser levels, built on the run's workers, each the mean of the level below."""
    cube = xterramind.open_sample()
    plan = plan_grid(grid_of(cube, "sample"), region=24)
    report = runner.run(plan, CubeSource(cube), "generate", model, tmp_path / "lulc.zarr", client=client, gpu=False,
                        targets=["S1GRD"], overviews=True)
    assert report.written == report.regions == 4
    zone = plan.zones[0].name
    assert [entry["asset"] for entry in zarr.open_group(str(tmp_path / "lulc.zarr"), path=zone,
                                                        mode="r").attrs["multiscales"]["layout"]] == ["S1GRD", "1"]
    full = xr.open_zarr(tmp_path / "lulc.zarr", group=zone)["S1GRD"].values
    half = xr.open_zarr(tmp_path / "lulc.zarr", group=f"{zone}/1")["S1GRD"].values
    expected = full.reshape(*full.shape[:-2], full.shape[-2] // 2, 2, full.shape[-1] // 2, 2).mean(axis=(-3, -1))
    np.testing.assert_allclose(half, expected, rtol=1e-6)
    assert load_config(_config(tmp_path, "", overviews=True)).overviews is True
    with pytest.raises(ConfigError, match="overviews: must be one of"):
        load_config(_config(tmp_path, "", overviews="yes"))


def test_a_run_file_names_the_task_of_predict_and_only_there(tmp_path):
    config, checkpoint = write_task(tmp_path, task_config(**PREDICT_TASK))
    task = {"config": config.name, "checkpoint": checkpoint.name}
    for settings, says in [({"verb": "predict"}, r"verb: predict needs the fine-tuned model's files: task: \{config"),
                           ({"verb": "embed", "task": task}, "task: is for verb: predict"),
                           ({"verb": "predict", "task": task | {"checkpoint": "gone.ckpt"}}, "no file at gone.ckpt"),
                           ({"verb": "predict", "task": task | {"ckpt": "x"}}, "ckpt"),
                           ({"verb": "predict", "task": {"config": config.name}}, "checkpoint: must be a file path")]:
        with pytest.raises(ConfigError, match=says):
            load_config(_config(tmp_path, "", **settings))
    assert load_config(_config(tmp_path, "", verb="predict", task=task)).make_model().kind == "segmentation"
    tiled, _ = write_task(tmp_path, task_config(**PREDICT_TASK, tiled={"crop": 224, "stride": 160}), name="tiled")
    run = load_config(_config(tmp_path, "", verb="predict", task=task | {"config": tiled.name}))
    tiling = run.make_plan(run.make_source()).zones[0].tiling  # the config's tiles, as predict takes them
    assert (tiling.tile_size, tiling.overlap) == (224, 64)


def _command(config: Path, *options) -> list[str]:
    return [sys.executable, "-m", "xterramind.cli", "run", str(config), "--tiles-per-second", "100", *options]


def test_a_killed_driver_is_finished_by_the_same_command(reference, client, tmp_path):
    plan, expected_store, _ = reference
    config = _config(tmp_path, client.scheduler.address)
    store = tmp_path / "area.zarr"
    driver = subprocess.Popen(_command(config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while (not (store / "utm32n").exists() or _marked(store) < 3) and time.time() < deadline:
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    done = _settled(client, store)
    total = len(plan.zones[0].region_indices)
    assert 3 <= done < total
    rerun = subprocess.run(_command(config), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = rerun.stdout.strip().splitlines()[-1]
    computed, empty, skipped = (int(summary.split(word)[0].split()[-1]) for word in (" regions computed", " without data",
                                                                                      " already complete"))
    assert skipped == done and computed + empty == total - done  # only the missing regions were recomputed
    np.testing.assert_array_equal(_embeddings(store), _embeddings(expected_store))


def _settled(client, store) -> int:
    """Regions marked once the tasks the dead driver left behind have finished (they still write)."""
    while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) or any(
            client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        time.sleep(0.1)
    time.sleep(0.5)
    return _marked(store)


def test_the_scheduler_holds_a_bounded_number_of_tasks_whatever_the_area(client, model, tmp_path):
    """A 1,000,000 km2 plan: its first waves never put more than 3 x (in_flight + 1) tasks on the scheduler."""
    plan = plan_area((4.0, 43.0, 17.0, 52.3))
    assert plan.area_km2 > 1_000_000 and plan.regions > 500
    source = SyntheticSource(land=(16.5, 43.0, 17.0, 43.5))  # far from the first regions: they read nothing
    peak, running = [0], [True]

    def watch():
        while running[0]:
            peak[0] = max(peak[0], client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        report = runner.run(plan, source, "embed", model, tmp_path / "continent.zarr", client=client, in_flight=6,
                            limit=60, gpu=False)
    finally:
        running[0] = False
        watcher.join(timeout=5)
    assert report.empty == 60 and report.regions == plan.regions
    assert 0 < peak[0] <= 3 * (6 + 1)


def test_stac_items_are_read_per_region_like_a_whole_load(client, model, tmp_path):
    with_items = catalogue(tmp_path, [make_item("l1c", l1c_files(), datetime(2024, 6, 1, tzinfo=UTC))])
    west, south, east, north = lonlat_bbox(rasterio.open(FIXTURES / "B02.tif").bounds)
    plan = plan_area((west + 0.005, south + 0.005, east - 0.005, north - 0.005), region=24)
    source = StacSource(str(with_items), ["S2L1C"])
    report = runner.run(plan, source, "embed", model, tmp_path / "stac.zarr", client=client, gpu=False)
    assert report.written > 0 and not report.failed
    zone = plan.zones[0]
    whole = xterramind.stac.load(with_items, ["S2L1C"], grid=zone.grid)
    expected = whole.terramind.embed(model, chunks=zone.region_size).compute(scheduler="threads")
    stored = _embeddings(tmp_path / "stac.zarr", zone.name)
    assert np.isfinite(stored).any()
    np.testing.assert_allclose(stored, expected.values, atol=1e-5, rtol=0)


def test_bad_runs_get_clear_errors(client, model, tmp_path):
    plan = plan_area(AREA, region=24)
    source = SyntheticSource(land=LAND)
    with pytest.raises(InputError, match="verb must be one of") as refused:
        runner.run(plan, source, "paint", model, tmp_path / "a.zarr", client=client)
    assert "did you mean" not in str(refused.value)
    with pytest.raises(OptionError, match="got 'detokenise'; did you mean 'detokenize'"):
        runner.run(plan, source, "detokenise", model, tmp_path / "a.zarr", client=client)
    with pytest.raises(InputError, match="belong to the plan"):
        runner.run(plan, source, "embed", model, tmp_path / "b.zarr", client=client, chunks=12)
    with pytest.raises(InputError, match="targets"):
        runner.run(plan, source, "generate", model, tmp_path / "c.zarr", client=client)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an xterramind run store"):
        runner.run(plan, source, "embed", model, tmp_path / "taken", client=client)
    assert (tmp_path / "taken" / "file.txt").read_text() == "mine"
    with pytest.raises(InputError, match="no worker offers the GPU"):
        runner.run(plan, source, "embed", model, tmp_path / "d.zarr", client=_cpu_only_client(), gpu=True)
    assert not (tmp_path / "d.zarr").exists()
    runner.run(plan, source, "embed", model, tmp_path / "e.zarr", client=client, limit=1, gpu=False)
    with pytest.raises(StoreError, match="holds zones"):
        runner.run(plan_area((15.0, 45.0, 15.1, 45.1), region=24), source, "embed", model, tmp_path / "e.zarr", client=client)
    with pytest.raises(StoreError, match="different result"):
        runner.run(plan, source, "embed", model, tmp_path / "e.zarr", client=client, layer=0, gpu=False)
    with pytest.raises(InputError, match="one date per pixel"):
        CubeSource(xterramind.open_sample().expand_dims(time=2))


class _cpu_only_client:
    """Stands in for a client of a cluster without GPU workers (only what the resource check reads)."""

    def scheduler_info(self):
        return {"workers": {"tcp://cpu:1": {"nthreads": 1, "resources": {}}}}


def test_command_line_dry_run_and_config_errors(tmp_path, capsys):
    config = _config(tmp_path, "")
    dry = subprocess.run(_command(config, "--dry-run"), capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "utm32n" in dry.stdout and "device-hours at 100.0 tiles/s" in dry.stdout
    assert not (tmp_path / "area.zarr").exists()
    broken = tmp_path / "broken.yaml"
    for text, message in [("area: [1, 2, 3, 4]\nsource: {synthetic: {}}\noutput: x.zarr\nspeed: 3\n", "unknown settings ['speed']"),
                          ("area: [1, 2, 3, 4]\nsource: {synthetic: {}}\n", "missing ['output']"),
                          ("area: [1, 2, 3, 4]\nsource: {stac: a, cube: b}\noutput: x.zarr\n", "exactly one of"),
                          ("area: [1, 2\n", "not valid YAML"),
                          ("area: [1, 2, 3, 4]\nsource: {stac: a, colections: [s2]}\noutput: x.zarr\n",
                           "unknown settings ['colections'] in a stac source"),
                          ("area: [1, 2, 3, 4]\nsource: {synthetic: {lnd: [1, 2, 3, 4]}}\noutput: x.zarr\n", "takes a mapping"),
                          ("area: [9, 45, 8, 46]\nsource: {synthetic: {}}\noutput: x.zarr\n", "west < east"),
                          ("area: [9, 45, 9.1, 45.1]\nsource: {cube: nowhere.zarr}\noutput: x.zarr\n", "no cube at")]:
        broken.write_text(text)
        assert cli.main(["run", str(broken), "--dry-run"]) == 1
        assert message in capsys.readouterr().err, text


LOCAL_CLUSTER_CHECK = """
import json, os, time, dask
from distributed import Client
from xterramind import runner

def state():
    return {"environ": dict(os.environ), "routes": list(dask.config.get("distributed.scheduler.http.routes"))}

before = state()
with runner.local_cluster() as local, Client(local) as client:
    started = state()
    client.restart()  # the worker is spawned again: its nanny puts things back once the new worker is up
    for _ in range(100):
        if state() == before:
            break
        time.sleep(0.1)
    restarted = state()
    given = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
print(json.dumps({"before": before, "started": started, "restarted": restarted, "closed": state(), "given": given}))
"""


def test_a_local_cluster_leaves_the_environment_of_this_process_as_it_was():
    """distributed's Nanny writes OMP_NUM_THREADS=1 and the like into os.environ to spawn each worker and leaves them
    (and a scheduler without bokeh adds to the dask configuration): a user's process that ran ``local_cluster()``
    (``run`` does, without a client) must keep neither, also after a worker restart; the workers still get them.
    In a fresh process, so that no other cluster of this module can write them meanwhile."""
    import dask

    names = {*dask.config.get("distributed.nanny.pre-spawn-environ"), "PYTHONHASHSEED", "__DASK_PARENT_PID"}
    environ = {k: v for k, v in os.environ.items() if k not in names}
    done = subprocess.run([sys.executable, "-c", LOCAL_CLUSTER_CHECK], env=environ, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    states = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(states.pop("given").values()) == ["1"]
    before = states.pop("before")
    for moment, state in states.items():
        assert state == before, moment


def test_the_dry_run_times_the_runner_s_model_task_on_regions_like_the_plan_s(model, monkeypatch):
    """The forecast's rate comes from the model task a run runs (the worker's thread setting included), after a
    warm-up, on a region of the plan's size or, where those are larger, of full batches; tiles are counted as the
    run counts them (generate: the tiles covering an inner region)."""
    from xterramind.models.handle import TerraMindModel

    outcomes, forwarded = [], []
    model_stage, encode, generate = runner.model_stage, TerraMindModel.encode, TerraMindModel.generate

    def counted(windows, **where):
        blocks, tiles = model_stage(windows, **where)
        outcomes.append(tiles)
        return blocks, tiles

    def forward(original):
        return lambda self, inputs, *args, **kwargs: (forwarded.append(len(next(iter(inputs.values())))),
                                                      original(self, inputs, *args, **kwargs))[1]

    monkeypatch.setattr(runner, "model_stage", counted)
    monkeypatch.setattr(TerraMindModel, "encode", forward(encode))
    monkeypatch.setattr(TerraMindModel, "generate", forward(generate))
    zone = plan_area(AREA, region=24).zones[0]  # regions of 2 x 2 tiles, fewer than a batch
    for verb, options, cover in [("embed", {}, False), ("generate", {"targets": ["LULC"]}, True)]:
        outcomes.clear(), forwarded.clear()
        rate, measured_on = runner.measure_tiles_per_second(zone, SyntheticSource(), verb, model, seconds=0, **options)
        inner = max(zone.region(*cell, cover).tile_count for cell in zone.region_indices)
        assert outcomes == [inner, inner] and sum(forwarded) == 2 * inner  # a warm-up, one timed
        assert rate > 0 and f"{inner} tiles in" in measured_on
    outcomes.clear(), forwarded.clear()
    large = plan_area(AREA, region=96).zones[0]  # regions of 8 x 8 tiles: the trial holds 8 whole batches of 2
    runner.measure_tiles_per_second(large, SyntheticSource(), "embed", model, seconds=0, batch_size=2)
    assert set(forwarded) == {2} and outcomes[0] == 16 < large.region(0, 0).tile_count


def test_bad_options_limits_and_speeds_fail_before_a_cluster_starts(model, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "local_cluster", lambda: pytest.fail("a cluster was started"))
    plan, source = plan_area(AREA, region=24), SyntheticSource(land=LAND)
    with pytest.raises(InputError, match=r"embed takes no option \['batchsize'\]; its options are .*'batch_size'"):
        runner.run(plan, source, "embed", model, tmp_path / "a.zarr", batchsize=3)
    with pytest.raises(InputError, match=r"generate needs the option targets, e.g. targets=\['LULC'\]$"):
        runner.forecast(plan, source, "generate", model, tiles_per_second=10)
    with pytest.raises(InputError, match="limit must be a whole number"):
        runner.run(plan, source, "embed", model, tmp_path / "b.zarr", limit=0)
    (tmp_path / "taken").mkdir()
    with pytest.raises(StoreError, match="not an xterramind run store"):
        runner.run(plan, source, "embed", model, tmp_path / "taken")
    for speed in (0, -5.0, float("inf"), "fast", True):
        with pytest.raises(InputError, match="tiles_per_second must be a positive number"):
            runner.forecast(plan, source, "embed", model, tiles_per_second=speed)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_the_forecast_table_names_a_cube_s_crs_by_its_code(model):
    cube = xterramind.open_sample()
    plan = plan_grid(grid_of(cube, "sample"), region=24)
    assert plan.zones[0].crs.startswith("PROJCS[")  # the cube's grid holds a WKT
    table = str(runner.forecast(plan, CubeSource(cube), "embed", model, tiles_per_second=5)).splitlines()
    assert table[1].split()[:2] == ["utm18n", "EPSG:32618"] and max(map(len, table)) < 100
