"""``xterramind.engine``: laying a cube's inputs on their tile lattice (``lay_out``), the lazy graph of one task
per region (``lazy_blocks``), region windows and the provenance every result carries."""

from types import SimpleNamespace

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

import xterramind
from xterramind import engine
from xterramind.engine import DEFAULT_BATCH, Layout, check_model, lay_out, lazy_blocks, provenance, window
from xterramind.errors import InputError, NoValidDataError, OptionError
from xterramind.geo import grid_of
from xterramind.grid import default_chunk, regions


@pytest.fixture(scope="module")
def small(cube):
    """24 x 24 tokens of the real scene, lazy: 2 x 2 regions of 12 tokens."""
    return cube.isel(y=slice(0, 384), x=slice(0, 384))


def test_lay_out_lays_tiles_and_regions_over_the_cubes_own_grid(cube, micro):
    layout = lay_out(cube, micro)
    assert isinstance(layout, Layout) and layout.tiling.grid.same_as(grid_of(cube, "cube"))
    tiling = layout.tiling
    assert (tiling.tile_size, tiling.overlap, tiling.patch) == (224, 32, 16)
    assert layout.region_size == default_chunk(tiling) == 120 and layout.times is None and layout.time_coords() == {}
    tiles = layout.tiles
    assert tiles.modalities == ("S2L1C",) and len(tiles.nodata[0]) == 13 and tiles.tiling is tiling
    assert (tiles.coords, tiles.check_input, tiles.token_input) == (False, True, False)
    other = lay_out(cube, micro, tile_size=96, overlap=64, chunks=5, batch_size=2, check_input=False)
    assert (other.tiling.tile_size, other.tiling.overlap, other.region_size) == (96, 64, 5)
    assert other.tiles.batch_size == 2 and other.tiles.check_input is False


def test_the_default_batch_is_chosen_where_the_task_runs(cube, micro):
    """A CPU driver must not fix the batch of GPU workers: the layout leaves it to the task's device."""
    cuda = SimpleNamespace(device=torch.device("cuda"))
    tiles = lay_out(cube, micro).tiles
    assert engine.DEFAULT_BATCH is DEFAULT_BATCH and DEFAULT_BATCH[micro.device.type] == 8
    assert tiles.batch_size is None and tiles.batch_for(micro) == DEFAULT_BATCH["cpu"]
    assert tiles.batch_for(cuda) == DEFAULT_BATCH["cuda"] > DEFAULT_BATCH["cpu"]
    assert lay_out(cube, micro, batch_size=3).tiles.batch_for(cuda) == 3


@pytest.mark.parametrize("option, value, message", [
    ("batch_size", 0, "batch_size must be a whole number of at least 1"),
    ("batch_size", 2.5, "batch_size must be a whole number"),
    ("tile_size", True, "tile_size must be a whole number"),
    ("chunks", "12", "chunks must be a whole number"),
    ("overlap", -32, "overlap must be a whole number of at least 0"),
    ("coords", "no", "coords must be True or False"),
    ("check_input", 1, "check_input must be True or False"),
])
def test_tiling_options_of_the_wrong_kind_are_refused_by_their_name(cube, micro, option, value, message):
    with pytest.raises(OptionError, match=message):
        lay_out(cube, micro, **{option: value})


def test_a_model_not_loaded_by_xterramind_is_refused(cube):
    for model in (object(), "terramind_micro", torch.nn.Linear(1, 1)):
        with pytest.raises(InputError, match=r"model must come from xterramind.load_model\(...\)"):
            check_model(model)
        with pytest.raises(InputError, match="load_model"):
            lay_out(cube, model)


def test_pixels_in_degrees_are_refused(small, micro):
    degrees = small.assign_coords(x=-75.6 + 1e-4 * np.arange(384), y=37.7 - 1e-4 * np.arange(384))
    with pytest.raises(InputError, match="geographic CRS"):
        lay_out(degrees.rio.write_crs("EPSG:4326", inplace=False), micro)


def test_in_memory_input_is_checked_at_once_and_lazy_input_is_left_to_the_region_tasks(small, micro):
    values = small.values
    with pytest.raises(NoValidDataError, match="no valid pixel"):
        lay_out(small.copy(data=np.full_like(values, np.nan, dtype=np.float32)), micro)
    with pytest.raises(InputError, match="far too small for reflectance x 10000"):
        lay_out(small.copy(data=values / 10000), micro)
    lay_out(small.copy(data=values / 10000), micro, check_input=False)  # the check can be turned off
    reads = []

    def read(block):
        reads.append(block.size)
        return block

    nan = small.copy(data=da.full(values.shape, np.nan, dtype=np.float32, chunks=128).map_blocks(
        read, meta=np.array((), np.float32)))
    assert lay_out(nan, micro).region_size == 120 and reads == []  # nothing read: the tasks check their windows
    nan.isel(band=0, y=0, x=0).compute()
    assert sum(reads) > 0  # (and reading is counted)


def _stub_task(calls):
    """A region task that records its windows and region and fills each output with the region's first token."""

    def task(*windows, region):
        calls.append(([w.shape for w in windows], region))
        y, x = region.y.tokens[0], region.x.tokens[0]
        return {"a": np.full((3, *region.shape), y, np.float32), "b": np.full(region.shape, x, np.int32),
                "mean": np.full((1, *region.shape), float(windows[0].mean()), np.float32)}

    return task


OUTPUTS = {"a": (np.float32, (3,)), "b": (np.int32, ()), "mean": (np.float32, (1,))}


def test_lazy_blocks_run_one_task_per_region_for_all_outputs_and_only_when_computed(small, micro):
    layout, calls = lay_out(small, micro, chunks=12), []
    arrays = lazy_blocks(layout, _stub_task(calls), OUTPUTS, cover=False)
    assert calls == [] and set(arrays) == set(OUTPUTS)
    assert arrays["a"].chunks == ((3,), (12, 12), (12, 12)) and arrays["b"].dtype == np.int32
    a, b, _ = dask.compute(arrays["a"], arrays["b"], arrays["mean"], scheduler="sync")
    expected = [region for row in regions(layout.tiling, 12) for region in row]
    assert sorted((r.y.tokens, r.x.tokens) for _, r in calls) == sorted((r.y.tokens, r.x.tokens) for r in expected)
    assert len(calls) == 4  # not once per output
    for shapes, region in calls:  # each task gets its region's window: the region's tiles and no more
        assert shapes == [(13, region.y.window[1] - region.y.window[0], region.x.window[1] - region.x.window[0])]
    np.testing.assert_array_equal(a[0], np.repeat([0, 12], 12)[:, None] * np.ones((1, 24)))
    np.testing.assert_array_equal(b, np.repeat([0, 12], 12)[None, :] * np.ones((24, 1)))
    covering = lazy_blocks(layout, _stub_task([]), OUTPUTS, cover=True, scale=2)
    assert covering["b"].chunks == ((24, 24), (24, 24))  # a block is the region x scale


def test_each_time_step_is_a_region_task_of_its_own(small, micro):
    stack = xr.concat([small, small * 2], dim="time").assign_coords(time=[1, 2])
    layout, calls = lay_out(stack, micro, chunks=12), []
    assert layout.times == 2 and list(layout.time_coords()["time"]) == [1, 2]
    arrays = lazy_blocks(layout, _stub_task(calls), OUTPUTS, cover=False)
    assert arrays["a"].chunks == ((1, 1), (3,), (12, 12), (12, 12))
    mean = arrays["mean"].compute(scheduler="sync")
    assert len(calls) == 8
    np.testing.assert_allclose(mean[1], 2 * mean[0], rtol=1e-5)  # the second step's windows are the doubled ones


def test_a_window_is_the_regions_tiles_in_elements_of_the_unit(small, micro):
    layout = lay_out(small, micro, chunks=12)
    region = regions(layout.tiling, 12)[1][0]
    assert (region.y.window, region.x.window) == ((160, 384), (0, 224))
    pixels = da.from_array(np.arange(2 * 384 * 384).reshape(2, 384, 384), chunks=100)
    np.testing.assert_array_equal(window(pixels, region, None).compute(), pixels[:, 160:384, 0:224].compute())
    stacked = da.stack([pixels, -pixels])
    np.testing.assert_array_equal(window(stacked, region, 1).compute(), -pixels[:, 160:384, 0:224].compute())
    tokens = da.from_array(np.arange(24 * 24).reshape(1, 24, 24))
    np.testing.assert_array_equal(window(tokens, region, None, unit=16).compute(), tokens[:, 10:24, 0:14].compute())


def test_every_result_carries_its_provenance(small, micro):
    layout = lay_out(small, micro, chunks=12)
    attrs = provenance(micro, ["S2L1C"], None, layout)
    assert attrs["xterramind_version"] == xterramind.__version__ and attrs["model"] == "terramind_micro"
    assert attrs["weights"] == micro.weights_id and attrs["modalities"] == ["S2L1C"] and attrs["seed"] == "none"
    assert (attrs["tile_size"], attrs["overlap"], attrs["chunks"], attrs["patch_size"]) == (224, 32, 12, 16)
    assert "random weights (seed 0)" in attrs["warning"]
    bare = provenance(micro, ("S2L2A", "coords"), np.int64(3))
    assert bare["seed"] == 3 and type(bare["seed"]) is int and "tile_size" not in bare
    assert bare["modalities"] == ["S2L2A", "coords"]
