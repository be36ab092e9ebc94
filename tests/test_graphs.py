"""``xterramind.graphs``: a window of a large lazy cube carries only the tasks it needs (found from its own keys,
not by listing the whole cube's), with the same values; graphs it cannot walk are left as they are."""

from datetime import UTC, datetime

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from tests.stac_catalogue import catalogue, l1c_files, make_item
from xterramind import executor, graphs, stac
from xterramind.modalities import resolve


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    """A 12-band 51,200 px square cube read from zarr as xarray reads it: 10,000 chunks of 512 px, none written
    (each reads as its fill value, so nothing is decoded), and its first chunks written with real values."""
    path = tmp_path_factory.mktemp("large") / "cube.zarr"
    side = 51_200
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array("reflectance", shape=(12, side, side), chunks=(12, 512, 512), dtype="uint16",
                               fill_value=1000, dimension_names=("band", "y", "x"))
    array[:, :1024, :1024] = np.arange(12 * 1024 * 1024, dtype=np.uint64).reshape(12, 1024, 1024) % 9973
    for name in ("y", "x"):
        group.create_array(name, data=np.arange(side, dtype=np.float64), dimension_names=(name,))
    with xr.open_zarr(path, consolidated=False) as cube:
        yield cube["reflectance"]


def windows(cube):
    """Windows as the region stages cut them, from the cube as read and after the selections a verb makes."""
    selected = cube.isel(band=[1, 2, 3, 7]).astype("float32")
    return {"as read": cube.data[:, 400:1400, 300:1300],
            "bands selected, float": selected.data[:, 400:1400, 300:1300],
            "arithmetic": (selected.data * 2 + 1)[:, 20_000:21_984, 30_000:31_984]}


@pytest.mark.parametrize("case", ["as read", "bands selected, float", "arithmetic"])
def test_a_window_carries_only_its_own_tasks_and_the_same_values(large, case):
    window = windows(large)[case]
    whole = len(window.__dask_graph__())  # the cube's tasks: 10,000 per layer
    small = graphs.culled(window)
    assert small is not window and small.name == window.name and small.chunks == window.chunks
    assert small.dtype == window.dtype
    layers = len(small.__dask_graph__().layers)
    assert whole > 10_000 and len(small.__dask_graph__()) <= window.npartitions * layers  # at most a task per chunk and layer
    np.testing.assert_array_equal(small.compute(scheduler="sync"), window.compute(scheduler="sync"))


def scaled(values, options):
    return values * options["by"]


def test_legacy_tuple_tasks_are_walked_through_the_keys_they_name():
    graph = {("legacy", 0): (np.ones, 3), ("legacy", 1): (np.add, ("legacy", 0), 1),  # 1 needs 0
             ("legacy", 2): (scaled, ("legacy", 1), {"by": 2}),  # 2 needs 1 only
             "alias": ("legacy", 2)}
    whole = da.Array(graph, "legacy", ((3, 3, 3),), dtype=float)
    window = whole[7:9]
    small = graphs.culled(window)
    assert small is not window and ("legacy", 0) in dict(small.__dask_graph__())  # 2 -> 1 -> 0, all kept
    np.testing.assert_array_equal(small.compute(), [4, 4])
    last = graphs.culled(da.Array({("last", 0): (np.ones, 2), ("last", 1): (np.zeros, 2)}, "last", ((2, 2),),
                                  dtype=float)[2:])
    assert {key for key in dict(last.__dask_graph__()) if key[0] == "last"} == {("last", 1)}  # the chunk it needs


def test_what_is_no_dask_array_comes_back_as_it_is():
    plain = np.arange(3)
    assert graphs.culled(plain) is plain
    delayed = dask.delayed(sum)([1, 2])
    assert graphs.culled(delayed) is delayed


def test_a_region_read_computes_a_graph_of_its_window_not_of_the_cube(large, monkeypatch):
    stored, original = [], da.store

    def store(sources, targets, **kwargs):
        stored.extend(len(source.__dask_graph__()) for source in sources)
        return original(sources, targets, **kwargs)

    monkeypatch.setattr(da, "store", store)
    window = windows(large)["bands selected, float"]
    values = executor.Compute((window,))()[0]
    assert stored and max(stored) < 100  # the window's 4 chunks through 4 layers, not the cube's 40,000 tasks
    np.testing.assert_array_equal(values, window.compute(scheduler="sync"))
    assert values[0, 0, 0] == large[1, 400, 300].values


def test_a_geotiff_cube_read_by_rioxarray_is_walked_through_its_concatenation_and_rechunking(cube):
    window = cube.isel(band=[1, 2, 3]).astype("float32").data[:, 10:300, 20:200]  # the bundled GeoTIFFs, stacked
    small = graphs.culled(window)
    assert small is not window  # its concatenate layer's tasks are legacy aliases of other layers' keys: read off
    assert len(small.__dask_graph__()) < len(window.__dask_graph__())
    np.testing.assert_array_equal(small.compute(scheduler="sync"), window.compute(scheduler="sync"))


def test_a_cube_from_a_stac_catalogue_is_walked_through_odc_stacs_own_keys(tmp_path):
    """odc-stac names its tasks in legacy tuples and keeps shared keys (the grid, the load configuration) in layers
    of other names."""
    path = catalogue(tmp_path, [make_item("l1c", l1c_files(), datetime(2024, 6, 1, tzinfo=UTC),
                                          {"s2:processing_baseline": "02.04"})])
    cube = stac.load(path, ["S2L1C"])
    (pixels,) = [item.data.data for item in resolve(cube, None)]
    window = pixels[..., 100:300, 40:260]
    small = graphs.culled(window)
    assert small is not window
    np.testing.assert_array_equal(small.compute(scheduler="sync"), window.compute(scheduler="sync"))


def test_a_graph_of_thousands_of_layers_is_walked_without_recursion():
    deep = da.ones((4, 4), chunks=2)
    for _ in range(1500):  # each a layer of its own
        deep = deep + 1
    window = deep[2:, :2]
    small = graphs.culled(window)
    assert small is not window and len(small.__dask_graph__()) < len(window.__dask_graph__()) / 3
    np.testing.assert_array_equal(small.compute(), np.full((2, 2), 1501.0))
