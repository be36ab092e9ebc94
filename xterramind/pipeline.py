"""The region stages, read -> model -> write, for the accessor's ``to_zarr`` and the area runner alike.

A region's job reads its windows (from a cube: its dask windows computed; from a ``Source``: the window
read and cut into the verb's modalities), runs the verb's region task on the worker's model (a region
without a valid pixel skips the model), and writes the blocks into the store's template, marking the
region done in the ledger only after its data is written. ``xterramind.executor`` runs the jobs, here or
on a cluster; only where the stages run differs.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

from . import buffers, executor, halo, store
from .embed import EMBED
from .engine import input_arrays, window
from .errors import GridMismatchError, NoValidDataError
from .generate import GENERATE
from .grid import PixelGrid, Region, region_at
from .modalities import resolve
from .predict import PREDICT
from .tiles import Tiles
from .tokens import DETOKENIZE, TOKENIZE
from .verb import Prepared, prepared_behind

VERBS = {verb.name: verb for verb in (EMBED, TOKENIZE, DETOKENIZE, GENERATE, PREDICT)}  # what the area runner runs


@dataclass(frozen=True)
class RegionWork:
    """What the stages of one store's regions need: small and picklable (the model travels as its recipe)."""

    task: object  # the prepared verb's region task
    tiles: Tiles
    region_size: int
    cover: bool
    template: store.Template | None  # None: a trial region that is timed, not written
    share: str | None = None  # the write's scope in which neighbouring regions share tiles (``xterramind.halo``)

    @classmethod
    def of(cls, prepared: Prepared, template: store.Template | None) -> RegionWork:
        """The work of a prepared verb's regions; blended pixel regions written to a store share their edge tiles."""
        share = halo.new_scope() if prepared.cover and template is not None else None
        return cls(prepared.task, prepared.layout.tiles, prepared.layout.region_size, prepared.cover, template, share)

    def region(self, index) -> Region:
        return region_at(self.tiles.tiling, self.region_size, *index[-2:], self.cover)

    def ordered(self, indices) -> list:
        """Region indices in the order to run them: in strips when regions share tiles (``halo.in_strips``)."""
        return halo.in_strips(indices) if self.share else list(indices)


@dataclass(frozen=True)
class SourceReader:
    """Reads a region's windows from a ``Source`` on ``grid`` (the token grid for a token input), cut into
    the verb's modalities: raw units, or a token grid's ids."""

    source: object
    grid: PixelGrid
    modalities: object  # the verb's ``modalities`` option, resolved again on every window

    def __call__(self, work: RegionWork, index) -> list[np.ndarray] | None:
        region, unit = work.region(index), work.tiles.window_unit
        window = tuple((span.window[0] // unit, span.window[1] // unit) for span in (region.y, region.x))
        cube = self.source.read(self.grid, window) if self.source.covers(self.grid, window) else None
        if cube is None:
            return None
        if work.tiles.token_input:
            windows = [np.asarray(cube.transpose("y", "x").values)[None]]
        else:
            windows = [np.asarray(item.data.values) for item in resolve(cube, self.modalities)]
        expected = tuple(stop - start for start, stop in window)
        if any(w.shape[-2:] != expected for w in windows):
            raise GridMismatchError(f"the source gave a {windows[0].shape[-2:]} window where {expected} px were "
                                    "asked for")
        return windows


def model_stage(windows, *, work: RegionWork, index) -> tuple[dict[str, np.ndarray] | None, int]:
    """Run the verb on the region's windows: its blocks by output (None without a valid pixel), and the tiles."""
    if windows is None or not work.tiles.valid(windows).any():
        return None, 0
    region = work.region(index)
    share = halo.Share(work.share, tuple(index[:-2])) if work.share else None
    return work.task(*windows, region=region, share=share), region.tile_count


def write_stage(modelled, *, work: RegionWork, index) -> tuple[bool, int]:
    """Write the region's blocks, then mark it done (only mark it without valid input): whether it held data,
    and its tiles."""
    blocks, tiles = modelled
    if blocks is None:
        store.mark_empty(work.template, index)
        return False, 0
    date = (None,) * (len(index) == 3)  # a result with time: the block of one date
    return work.template.write([blocks[name][date] for name in work.template.layout.variables], index), tiles


def region_job(work: RegionWork, index, read, *, resources=None, name: str = "region") -> executor.Job:
    """The job of one region: ``read`` (a ``Compute`` of its windows, or a stage), the model, the write."""
    model = executor.Stage(functools.partial(model_stage, work=work, index=index), resources)
    write = executor.Stage(functools.partial(write_stage, work=work, index=index))
    return executor.Job((read, model, write), name)


def cube_jobs(prepared: Prepared, work: RegionWork, todo) -> list[executor.Job]:
    """The jobs of a prepared verb's regions ``todo`` (template block indices), its windows read from its cube."""
    arrays = input_arrays(prepared.layout)
    unit = prepared.layout.tiles.window_unit
    jobs = []
    for index in todo:
        date = index[0] if len(index) == 3 else None
        windows = tuple(window(array, work.region(index), date, unit) for array in arrays)
        jobs.append(region_job(work, index, executor.Compute(windows), name="-".join(map(str, index))))
    return jobs


def block_jobs(dataset: xr.Dataset, template: store.Template, todo) -> list[executor.Job]:
    """The jobs of any other lazy result: each block of every variable computed together, then written."""
    return [executor.Job((executor.Compute(tuple(template.layout.block(dataset, index))),
                          executor.Stage(functools.partial(_write_computed, template=template, index=index))),
                         "-".join(map(str, index))) for index in todo]


def _write_computed(blocks, *, template: store.Template, index) -> tuple[bool, int]:
    return template.write(list(blocks), index), 0


def write(result: xr.DataArray | xr.Dataset, path: str | os.PathLike, *, resume: bool = True, overwrite: bool = False,
          zarr_format: int = store.DEFAULT_ZARR_FORMAT, progress_bar: bool | None = None) -> store.WriteReport:
    """Write a lazy xterramind result to a zarr store, region by region (``result.terramind.to_zarr``): a verb's
    own result through its region stages, any other lazy result block by block. See ``xterramind.store``."""
    started = time.perf_counter()
    template = store.prepare(result, path, resume=resume, overwrite=overwrite, zarr_format=zarr_format)
    layout, ledger = template.layout, template.ledger()
    todo = [index for index in layout.block_indices() if not ledger[index]]
    prepared = prepared_behind(result)
    if prepared is not None:
        work = RegionWork.of(prepared, template)
        jobs = cube_jobs(prepared, work, work.ordered(todo))
    else:
        work, jobs = None, block_jobs(store.as_dataset(result), template, todo)
    again = "run it again without overwrite=True to resume" if overwrite else "run the same call again to resume"
    try:
        with buffers.reused():  # each region's large arrays in the memory of the one before
            done = executor.execute(jobs, f"writing {os.path.basename(template.path)}", progress_bar, resume=again)
    finally:
        halo.forget(work and work.share)
    valid = [outcome.value[0] for outcome in done]
    total = len(layout.block_indices())
    report = store.WriteReport(template.path, total, len(todo), total - len(todo), valid.count(False),
                               time.perf_counter() - started)
    if todo and not any(valid) and not (ledger == store.DONE_VALID).any():
        raise NoValidDataError(f"the input has no valid pixel: every value is NaN or its band's nodata ({report})")
    return report
