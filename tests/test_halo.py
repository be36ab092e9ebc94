"""``xterramind.halo``: blended pixel regions written to a store share the tiles astride their edges. Each tile runs
once, the store is bit for bit the dask graph's (where every region runs every tile it covers), in any chunking and
with any number of regions in flight; a region that fails leaves its neighbours to run its tiles; an over-full
shelf costs tiles run again, never a value; nothing is left on the shelf after a write."""

import threading

import dask
import numpy as np
import pytest
import xarray as xr

from xterramind import halo, pipeline
from xterramind.geo import grid_of
from xterramind.grid import Tiling, region_at
from xterramind.models.handle import TerraMindModel
from xterramind.tiles import tiles_with_data


@pytest.fixture
def tiles_run(monkeypatch):
    """The tiles given to ``TerraMindModel.generate``, by lattice origin (thread-safe)."""
    run, lock, original = [], threading.Lock(), TerraMindModel.generate

    def counting(self, inputs, targets, **options):
        with lock:
            run.append(len(next(iter(inputs.values()))))
        return original(self, inputs, targets, **options)

    monkeypatch.setattr(TerraMindModel, "generate", counting)
    return run


def _lattice_tiles(cube, size: int) -> int:
    tiling = Tiling(grid_of(cube, "cube"), size)
    return len(tiling.rows.origins) * len(tiling.cols.origins)


def _stored(path) -> dict[str, np.ndarray]:
    with xr.open_zarr(path) as stored:
        return {name: var.values for name, var in stored.data_vars.items()}


@pytest.mark.parametrize("chunks, threads", [(14, 2), (24, 3), (16, 1), (12, 2), (7, 2)])
def test_each_tile_runs_once_and_the_store_is_bit_for_bit_the_unshared_graphs(cube, micro, tiles_run, tmp_path, chunks,
                                                                              threads):
    result = cube.terramind.generate("LULC", micro, seed=3, chunks=chunks)
    expected = result.compute()  # the dask graph: every region runs every tile it covers
    unshared = sum(tiles_run)
    tiles_run.clear()
    with dask.config.set(num_workers=threads):
        result.terramind.to_zarr(tmp_path / "lulc.zarr", progress=False)
    if chunks >= micro.config.image_size // 16:
        assert sum(tiles_run) == _lattice_tiles(cube, micro.config.image_size) < unshared
    else:  # regions smaller than a tile (14 tokens) share nothing: a group per tile would run in batches of one
        assert sum(tiles_run) == unshared
    stored = _stored(tmp_path / "lulc.zarr")
    for name in ("LULC", "LULC_probability"):
        np.testing.assert_array_equal(stored[name], expected[name].values, err_msg=name)
    assert not halo.shelf().parcels and halo.shelf().nbytes == 0  # the write's parts went with it


def test_an_over_full_shelf_costs_tiles_run_again_never_a_value(cube, micro, tiles_run, tmp_path, monkeypatch):
    result = cube.terramind.generate("LULC", micro, seed=3, chunks=14)
    expected = result.compute()
    unshared = sum(tiles_run)
    tiles_run.clear()
    small = halo.Shelf(limit=0)  # every part leaves the shelf when it is filled, unless its neighbour waits for it
    monkeypatch.setattr(halo, "shelf", lambda: small)
    with dask.config.set(num_workers=1):  # one region at a time: no neighbour is ever waiting
        result.terramind.to_zarr(tmp_path / "lulc.zarr", progress=False)
    assert sum(tiles_run) == unshared
    np.testing.assert_array_equal(_stored(tmp_path / "lulc.zarr")["LULC_probability"], expected.LULC_probability.values)


def test_the_neighbours_of_a_region_that_failed_run_its_groups_themselves_with_the_same_result(cube, micro, tiles_run):
    prepared = pipeline.prepared_behind(cube.terramind.generate("LULC", micro, seed=3, chunks=14))
    task, layout = prepared.task, prepared.layout
    windows = [np.asarray(item.data.values) for item in layout.inputs]

    def window_of(region):
        (y0, y1), (x0, x1) = region.y.window, region.x.window
        return [w[:, y0:y1, x0:x1] for w in windows]

    def refs_of(region):
        return tiles_with_data(region, layout.tiles.valid(window_of(region)), layout.tiles)

    first, second = (region_at(layout.tiling, layout.region_size, 0, col, True) for col in (0, 1))
    alone = task(*window_of(second), region=second)
    share = halo.Share(halo.new_scope())
    failed = halo.Plan(refs_of(first), first, layout.tiling, layout.region_size, True, share)
    assert failed.owing  # the first region claimed the groups astride its edges ...
    failed.fail()  # ... and failed before their batches were done
    tiles_run.clear()
    shared = task(*window_of(second), region=second, share=share)
    assert sum(tiles_run) == len(refs_of(second))  # every tile it covers, those of the failed groups too
    for name, block in alone.items():
        np.testing.assert_array_equal(shared[name], block, err_msg=name)
    halo.forget(share.scope)


def test_a_write_whose_region_fails_raises_and_does_not_wait_for_it(cube, micro, tmp_path, monkeypatch):
    original, calls = TerraMindModel.generate, []

    def failing(self, inputs, targets, **options):
        calls.append(1)
        if len(calls) == 2:  # the first region's second batch: its neighbour waits for tiles never handed on
            raise RuntimeError("the device fell over")
        return original(self, inputs, targets, **options)

    monkeypatch.setattr(TerraMindModel, "generate", failing)
    result = cube.terramind.generate("LULC", micro, seed=3, chunks=14, batch_size=2)
    raised = []

    def write():
        try:
            result.terramind.to_zarr(tmp_path / "lulc.zarr", progress=False)
        except RuntimeError as error:
            raised.append(error)

    writer = threading.Thread(target=write, daemon=True)
    with dask.config.set(num_workers=2):
        writer.start()
        writer.join(timeout=120)
    assert not writer.is_alive() and "fell over" in str(raised[0])
    assert not halo.shelf().parcels


def test_regions_go_in_strips_so_their_upper_and_left_neighbours_came_just_before():
    indices = [(row, col) for row in range(3) for col in range(5)]
    ordered = halo.in_strips(indices, strip=2)
    assert ordered[:6] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)] and ordered[-3:] == [(0, 4), (1, 4), (2, 4)]
    assert sorted(ordered) == indices
    dated = halo.in_strips([(t, row, col) for t in range(2) for row, col in indices], strip=2)
    assert [index[0] for index in dated] == [0] * 15 + [1] * 15


def test_the_regions_sharing_tiles_with_a_region_smaller_than_a_tile_reach_beyond_the_eight_around_it(cube, micro):
    tiling = Tiling(grid_of(cube, "cube"), micro.config.image_size)
    around = halo.around((2, 2), tiling, 5, cover=True)  # 5-token regions, 14-token tiles
    assert {(2, 2), (0, 2), (4, 2), (2, 0), (2, 4)} <= set(around)
    own = region_at(tiling, 5, 2, 2, True)
    for region in around.values():
        assert set(region.y.indices) & set(own.y.indices) and set(region.x.indices) & set(own.x.indices)
    assert set(halo.around((2, 2), tiling, 12, cover=False)) == {(2, 2)}  # owned tiles: regions of whole strides
