"""A real multi-process Dask cluster: same results, one model load per worker, no weights in the graph."""

import pickle

import cloudpickle
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

import xterramind
from xterramind import runtime


@pytest.fixture(scope="module")
def client(distributed_leftovers_undone):
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        yield client


def test_cluster_result_equals_local_and_each_worker_loads_the_model_once(client, tmp_path):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    result = xterramind.open_sample().terramind.embed(model, chunks=6)  # 25 regions
    expected = result.compute(scheduler="threads")

    graph = cloudpickle.dumps(dict(result.data.__dask_graph__()))
    assert b"_rebuild_tensor" not in graph and len(graph) < 1_000_000  # the micro weights alone are 25 MB
    assert pickle.loads(pickle.dumps(model)) is model  # handles travel as their recipe

    report = result.terramind.to_zarr(tmp_path / "cluster.zarr")
    assert report.written == 25
    loads = client.run(lambda: dict(runtime.loads))
    assert len(loads) == 2 and all(counts.get("terramind_micro") == 1 for counts in loads.values())
    stored = xr.open_zarr(tmp_path / "cluster.zarr")["embeddings"].values
    np.testing.assert_allclose(stored, expected, atol=1e-5, rtol=0)

    processing = client.run(lambda dask_worker: len(dask_worker.data))  # the workers really did the work
    assert len(processing) == 2


def test_generated_lulc_on_the_cluster_equals_the_local_result(client, tmp_path):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")
    result = xterramind.open_sample().terramind.generate("LULC", model, seed=11, chunks=12)
    expected = result.compute(scheduler="threads")
    result.terramind.to_zarr(tmp_path / "lulc.zarr")
    stored = xr.open_zarr(tmp_path / "lulc.zarr")
    np.testing.assert_array_equal(stored.LULC.values, expected.LULC.values)
    np.testing.assert_allclose(stored.LULC_probability.values, expected.LULC_probability.values, atol=1e-5, rtol=0)
    loads = client.run(lambda: dict(runtime.loads))
    assert all(counts.get("tokenizer LULC") == 1 for counts in loads.values())


def test_a_cube_source_reads_its_window_on_the_task_s_own_thread_in_a_worker(distributed_leftovers_undone):
    """A worker of one thread: a read that went through the cluster's scheduler would wait for chunk tasks that
    nobody can run (the deadlock an area run over a dask cube met when every thread held such a read)."""
    from xterramind.geo import grid_of
    from xterramind.sources import CubeSource

    cube = xterramind.open_sample().chunk({"y": 64, "x": 64})  # dask chunks: the read computes a graph
    source, grid = CubeSource(cube), grid_of(cube, "sample")
    expected = cube.isel(y=slice(0, 96), x=slice(32, 160)).values
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        read = client.submit(lambda: source.read(grid, ((0, 96), (32, 160))).values, pure=False)
        np.testing.assert_array_equal(read.result(timeout=60), expected)
        seen = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert seen == ["lambda"]  # the read's task, and none of the cube's chunks went through the scheduler
