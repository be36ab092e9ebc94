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
