"""``xterramind.pipeline``: the region stages (read -> model -> write) that ``to_zarr`` and the area runner share.
A verb's own result is written through its region stages, any other lazy result block by block; both give the
same store, with one forward pass per region, and regions without a valid pixel never reach the model."""

import threading

import numpy as np
import pytest
import xarray as xr
import zarr

from xterramind import executor, pipeline, store
from xterramind.errors import GridMismatchError
from xterramind.facts import LULC_NODATA, TOKEN_NODATA
from xterramind.geo import grid_of
from xterramind.models.handle import TerraMindModel

FORWARD = {"encode": 0, "generate": 0, "tokenize": 1}  # method -> position of its batch argument


@pytest.fixture
def forward(monkeypatch):
    """Forward passes and tiles through each of the model's forward methods (thread-safe)."""
    counts, lock = {name: [0, 0] for name in FORWARD}, threading.Lock()
    for name, position in FORWARD.items():
        original = getattr(TerraMindModel, name)

        def counting(self, *args, _original=original, _name=name, _position=position, **kwargs):
            batch = args[_position]
            with lock:
                counts[_name][0] += 1
                counts[_name][1] += len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(TerraMindModel, name, counting)
    return counts


@pytest.fixture
def paths(monkeypatch):
    """Which way ``pipeline.write`` went, counted: ``cube_jobs`` (region stages) or ``block_jobs``."""
    taken = []
    for name in ("cube_jobs", "block_jobs"):
        original = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *a, _original=original, _name=name: taken.append(_name) or _original(*a))
    return taken


@pytest.fixture(scope="module")
def small(cube):
    return cube.isel(y=slice(0, 384), x=slice(0, 384))  # 24 x 24 tokens: 2 x 2 regions of 12 tokens


def _results(small, micro):
    """Each verb's lazy result on the small cube, its forward method and the tiles its 4 regions run."""
    return {"embed": (small.terramind.embed(micro, chunks=12), "encode", 4),  # each region: the tile owning it
            "tokenize": (small.terramind.tokenize("S2L2A", micro, chunks=12), "tokenize", 4),
            "generate": (small.terramind.generate("LULC", micro, seed=2, chunks=12), "generate", 16)}  # 4 covering each


def _arrays(path) -> dict[str, np.ndarray]:
    with xr.open_zarr(path, decode_coords="all") as stored:
        return {name: var.values for name, var in stored.data_vars.items()}


@pytest.mark.parametrize("verb", ["embed", "tokenize", "generate"])
def test_a_verbs_own_result_runs_its_region_stages_once_per_region_like_any_lazy_result_block_by_block(
        small, micro, forward, paths, tmp_path, verb):
    result, method, tiles = _results(small, micro)[verb]
    report = pipeline.write(result, tmp_path / "own.zarr", progress_bar=False)
    assert paths == ["cube_jobs"] and report.written == report.regions == 4
    assert forward[method] == [4, tiles]  # one forward pass per region, every tile once, whatever the outputs
    forward[method][:] = [0, 0]
    modified = result + 0  # a new graph: written block by block from the dask graph
    pipeline.write(modified, tmp_path / "modified.zarr", progress_bar=False)
    assert paths == ["cube_jobs", "block_jobs"] and forward[method] == [4, tiles]
    own, other = _arrays(tmp_path / "own.zarr"), _arrays(tmp_path / "modified.zarr")
    assert set(own) == set(other) == set(result.data_vars if isinstance(result, xr.Dataset) else [result.name])
    for name in own:
        np.testing.assert_array_equal(own[name], other[name])
        assert own[name].dtype == other[name].dtype
    computed = result.compute()
    for name, values in own.items():
        np.testing.assert_array_equal(values, (computed[name] if isinstance(computed, xr.Dataset) else computed).values)


@pytest.fixture(scope="module")
def holed(cube):
    """The scene (3 x 3 regions of 12 tokens) with nodata on pixels 0-400 both ways: no valid pixel in the windows
    of the four top-left regions that own their tokens (the tiles at 0 and 11), nor in that of the top-left region
    that covers them (the tiles at 0 and 11 again, up to pixel 400)."""
    values = cube.values.copy()
    values[:, :400, :400] = 0
    return cube.copy(data=values).rio.write_nodata(0).chunk({"y": 240, "x": 240})


@pytest.mark.parametrize("verb, method, empty, variables", [
    ("embed", "encode", [(0, 0), (0, 1), (1, 0), (1, 1)], {"embeddings": np.nan}),
    ("tokenize", "tokenize", [(0, 0), (0, 1), (1, 0), (1, 1)], {"tokens": TOKEN_NODATA}),
    ("generate", "generate", [(0, 0)], {"LULC": LULC_NODATA, "LULC_probability": np.nan}),
])
def test_a_region_without_a_valid_pixel_is_marked_done_without_the_model_and_reads_back_as_nodata(
        holed, micro, forward, tmp_path, verb, method, empty, variables):
    options = {"embed": {}, "tokenize": {"modality": "S2L2A"}, "generate": {"targets": "LULC", "seed": 2}}[verb]
    result = getattr(holed.terramind, verb)(model=micro, chunks=12, **options)
    report = pipeline.write(result, tmp_path / "out.zarr", progress_bar=False)
    assert (report.written, report.empty) == (9, len(empty))
    assert forward[method][0] == 9 - len(empty)  # one pass for each other region, none for these
    ledger = zarr.open_array(str(tmp_path / "out.zarr"), path="xterramind/done", mode="r")[...]
    assert sorted(zip(*np.nonzero(ledger == store.DONE_EMPTY), strict=True)) == empty and (ledger > 0).all()
    stored = _arrays(tmp_path / "out.zarr")
    assert set(stored) == set(variables)
    invalid = (holed.values == 0).any(axis=0)  # (the scene has a few zeros of its own too)
    # nodata where the input pixel was, or for token outputs where all the token's pixels were
    expected = invalid if verb == "generate" else invalid.reshape(30, 16, 30, 16).all(axis=(1, 3))
    assert expected[:25, :25].all() if verb != "generate" else expected[:400, :400].all()
    for name, nodata in variables.items():
        missing = np.isnan(stored[name]) if np.isnan(nodata) else stored[name] == nodata
        if name == "LULC":  # class 0 ("no data") is also a class the model may give
            assert missing[expected].all() and not missing.all()
        else:
            np.testing.assert_array_equal(missing, np.broadcast_to(expected, stored[name].shape), err_msg=name)


def test_a_result_with_time_is_written_region_by_region_and_date_by_date(small, micro, tmp_path):
    stack = xr.concat([small, small * 2], dim="time").assign_coords(time=np.array(
        ["2024-06-01", "2024-07-01"], dtype="datetime64[ns]"))
    result = stack.terramind.embed(micro, chunks=12)
    report = result.terramind.to_zarr(tmp_path / "dates.zarr", progress=False)
    assert report.written == report.regions == 8
    with xr.open_zarr(tmp_path / "dates.zarr") as stored:
        np.testing.assert_array_equal(stored.embeddings.values, result.values)


def test_every_verb_is_run_by_the_region_stages():
    assert set(pipeline.VERBS) == {"embed", "tokenize", "detokenize", "generate", "predict"}
    assert all(verb.name == name for name, verb in pipeline.VERBS.items())


class _Source:
    """A source that gives the window asked for, one pixel short, or nothing (it does not cover it)."""

    def __init__(self, cube, short=False, covers=True):
        self.cube, self.short, self.covered = cube, short, covers

    def covers(self, grid, window):
        return self.covered

    def read(self, grid, window):
        (y0, y1), (x0, x1) = window
        return self.cube.isel(y=slice(y0, y1 - self.short), x=slice(x0, x1)).load()


def test_a_source_region_is_read_cut_into_its_modalities_and_checked(small, micro, tmp_path):
    prepared = pipeline.VERBS["embed"].prepare(small, micro, chunks=12)
    work = pipeline.RegionWork.of(prepared, None)
    grid = grid_of(small, "cube")
    region = work.region((1, 0))
    windows = pipeline.SourceReader(_Source(small), grid, None)(work, (1, 0))
    assert len(windows) == 1 and windows[0].shape == (13, 224, 224)  # the tile at (10, 0): rows 160-384
    np.testing.assert_array_equal(windows[0], small.values[:, slice(*region.y.window), slice(*region.x.window)])
    assert pipeline.SourceReader(_Source(small, covers=False), grid, None)(work, (1, 0)) is None
    with pytest.raises(GridMismatchError, match=r"the source gave a \(223, 224\) window where \(224, 224\) px"):
        pipeline.SourceReader(_Source(small, short=True), grid, None)(work, (1, 0))
    blocks, tiles = pipeline.model_stage(windows, work=work, index=(1, 0))
    assert tiles == 1 and blocks["embeddings"].shape == (micro.config.dim, 12, 12)
    assert pipeline.model_stage(None, work=work, index=(1, 0)) == (None, 0)
    assert pipeline.model_stage([np.zeros_like(windows[0]) * np.nan], work=work, index=(1, 0)) == (None, 0)


def test_a_region_job_is_read_then_model_then_write_with_the_model_on_the_resources_asked_for(small, micro, tmp_path):
    prepared = pipeline.VERBS["tokenize"].prepare(small, micro, modality="S2L2A", chunks=12)
    template = store.prepare(prepared.lazy(), tmp_path / "tokens.zarr")
    work = pipeline.RegionWork.of(prepared, template)
    read = executor.Stage(lambda: pipeline.SourceReader(_Source(small), grid_of(small, "cube"), ["S2L2A"])(work, (0, 1)))
    job = pipeline.region_job(work, (0, 1), read, resources={"GPU": 1}, name="r-0-1")
    assert len(job.stages) == 3 and job.stages[0] is read and job.name == "r-0-1"
    assert [stage.resources for stage in job.stages] == [None, {"GPU": 1}, None]
    (done,) = executor.execute([job], "one region", progress_bar=False)
    assert done.value == (True, 1)  # it held data; one tile
    ledger = template.ledger()
    assert ledger.tolist() == [[0, store.DONE_VALID], [0, 0]]
    with xr.open_zarr(tmp_path / "tokens.zarr") as stored:
        np.testing.assert_array_equal(stored.tokens.values[:12, 12:], prepared.lazy().values[:12, 12:])
    empty = pipeline.region_job(work, (1, 1), executor.Stage(lambda: None))
    (done,) = executor.execute([empty], "no data", progress_bar=False)
    assert done.value == (False, 0) and template.ledger()[1, 1] == store.DONE_EMPTY
    with xr.open_zarr(tmp_path / "tokens.zarr") as stored:
        assert (stored.tokens.values[12:, 12:] == TOKEN_NODATA).all()


def test_a_result_whose_outputs_were_renamed_writes_what_it_holds(cube, micro, tmp_path):
    images = cube.isel(y=slice(0, 224), x=slice(0, 224)).terramind.generate(["S1GRD", "S1RTC"], micro, timesteps=1)
    swapped = images.rename({"S1GRD": "S1RTC", "S1RTC": "S1GRD"})
    swapped.terramind.to_zarr(tmp_path / "swapped.zarr", progress=False)
    stored = _arrays(tmp_path / "swapped.zarr")
    for name in ("S1GRD", "S1RTC"):
        np.testing.assert_array_equal(stored[name], swapped[name].values, err_msg=name)
