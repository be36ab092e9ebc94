"""Running a verb over a planned area on a Dask cluster: in waves, resumable, surviving lost workers.

The store is a zarr group with one subgroup per zone of the plan (``utm33n``, ...), each an ordinary
xterramind store: the verb's georeferenced result template, written once (and on a rerun checked, never
replaced), and its ledger. Each region of the plan is a job of the three stages every write has
(``xterramind.pipeline``), each a task of its own (``xterramind.executor``):

- read (any worker): ask the source whether the window can hold data, read it (region plus halo) and cut
  it into the verb's modalities (a token grid for ``detokenize``);
- model (the workers offering the ``GPU`` resource, when any does): run the verb's region task on the
  worker's cached model; no model work for a region without valid input;
- write (any worker; Dask keeps it where the blocks are, on another thread): write the region into the
  template, then mark it in the ledger. Compressing a region takes longer than the GPU's forward passes
  (TerraMind-B float32 embeddings), so it must not hold the GPU resource.

At most ``in_flight`` regions are on the cluster at once, whatever the area: a new region goes out as each
one finishes and the finished one is released, so the scheduler holds at most ``3 * (in_flight + 1)``
tasks (the one more: a release can reach the scheduler just after the next region's tasks). Regions marked in the ledger
are never recomputed: a run killed at any point is finished by the same call run again, which redoes only
what was in flight or failed. Region tasks are deterministic, so a region run twice (a lost worker, a
dead driver whose last tasks still finished) writes the same bytes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from . import buffers, executor, halo, store
from .arguments import keywords, nearest, unknown, whole_number
from .engine import check_model
from .errors import GridMismatchError, InputError, NoValidDataError, OptionError
from .grid import PixelGrid
from .models.handle import TerraMindModel
from .overviews import build as overviews_of
from .pipeline import VERBS, RegionWork, SourceReader, model_stage, region_job
from .planner import Plan, Zone, plan_grid
from .sources import Source, SyntheticSource
from .verb import Prepared

__all__ = ["Forecast", "RegionOutcome", "RunReport", "check_options", "forecast", "local_cluster",
           "measure_tiles_per_second", "model_worker_environ", "option_mistakes", "run", "verb_options"]

log = logging.getLogger("xterramind.run")

PLANNED = ("chunks", "overlap", "tile_size")  # set by the plan, the same for every zone: never a verb option
EXAMPLES = {"targets": ["LULC"], "modality": "S2L2A"}  # a value for each option a verb requires, for messages
RUN_ATTR = store.RUN_ATTR  # on the store's root group: what ran, zone by zone
LOG_EVERY = 30.0  # seconds between progress lines in the log (batch jobs have no progress bar)


@dataclass(frozen=True)
class RegionOutcome:
    """How one region went: where it ran and where its time went, for finding slow workers or sources.

    Attributes:
        zone: the zone's name, e.g. ``"utm32n"``.
        index: the region's row and column in the zone's region lattice (also as ``cell``, its old name).
        tiles: tiles run through the model (0: the region had no valid input).
        read_seconds: reading the window from the source.
        model_seconds: running the verb.
        write_seconds: writing the region and marking it in the ledger.
        worker: the address of the worker that computed it (``"local"`` outside a cluster).

    Example:
        >>> slowest = max(report.outcomes, key=lambda outcome: outcome.read_seconds)
        >>> slowest.zone, slowest.index, slowest.worker
    """

    zone: str
    index: tuple[int, int]
    tiles: int  # tiles run through the model (0: no valid input)
    read_seconds: float
    model_seconds: float
    write_seconds: float
    worker: str

    @property
    def cell(self) -> tuple[int, int]:
        """The old name of ``index``."""
        return self.index


@dataclass
class RunReport:
    """What a run did: regions computed, found empty, already complete or failed, tiles and time.

    Failed regions are reported, not raised, so one bad scene does not stop a continent: run the same
    call again to retry them. ``str(report)`` gives a one-line summary.

    Attributes:
        store: the path of the run's store.
        regions: regions in the plan.
        skipped: regions complete before this run.
        written: regions computed and written by this run.
        empty: regions without valid input (marked done, not computed).
        failed: ``(zone, (row, col), error)`` of each region that failed.
        tiles: tiles run through the model.
        seconds: the run's wall time.
        prepare_seconds: of ``seconds``, writing or checking the templates and reading the ledgers.
        outcomes: one ``RegionOutcome`` per finished region.

    Example:
        >>> report = runner.run(plan, source, "embed", model, "europe.zarr")
        >>> print(report)
        >>> report.failed   # run again to retry these
    """

    store: str
    regions: int  # in the plan
    skipped: int  # complete before this run
    written: int  # computed and written by this run
    empty: int  # without valid input (marked, not computed)
    failed: list[tuple[str, tuple[int, int], str]] = field(default_factory=list)
    tiles: int = 0  # that the written regions cover (a tile two regions share counts twice, though it runs once)
    seconds: float = 0.0
    prepare_seconds: float = 0.0  # of ``seconds``: writing or checking the templates and reading the ledgers
    outcomes: list[RegionOutcome] = field(default_factory=list, repr=False)

    @property
    def tiles_per_second(self) -> float:
        """Tiles per second over the whole run, preparation included (0 when nothing ran)."""
        return self.tiles / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        failed = f", {len(self.failed)} FAILED (run again to retry them)" if self.failed else ""
        return (f"{self.store}: {self.written} regions computed, {self.empty} without data, {self.skipped} already "
                f"complete, of {self.regions}{failed}; {self.tiles} tiles in {self.seconds:.1f} s "
                f"({self.tiles_per_second:.1f} tiles/s)")


def verb_options(verb: str) -> tuple[list[str], list[str]]:
    """The options ``verb`` requires, and every option it takes, as ``run`` passes them (the plan sets ``PLANNED``).

    Raises:
        OptionError: an unknown verb.

    Example:
        >>> verb_options("generate")[0]
        ['targets']
    """
    if verb not in VERBS:
        guess = nearest(verb, VERBS)
        raise OptionError(f"verb must be one of {sorted(VERBS)}, got {verb!r}" + (f"; did you mean {guess!r}?"
                                                                                   if guess else ""))
    return keywords(VERBS[verb].prepare, skip=("cube", "tokens", "model", *PLANNED))


def option_mistakes(verb: str, options: dict) -> tuple[list[str], list[str], list[str]]:
    """The options given to ``verb`` that belong to the plan, those it does not take, and those it needs but
    lacks (each interface says them in its own words: ``check_options``, a run file's ``load_config``).

    Example:
        >>> option_mistakes("generate", {"seed": 0, "batchsize": 8})
        ([], ['batchsize'], ['targets'])
    """
    required, taken = verb_options(verb)
    planned = sorted(set(PLANNED) & set(options))
    return planned, unknown(options, [*PLANNED, *taken]), [name for name in required if name not in options]


def check_options(verb: str, options: dict) -> None:
    """Fail on a verb option that is missing, unknown or the plan's, before anything is prepared.

    Example:
        >>> check_options("generate", {"targets": ["LULC"], "seed": 0})
    """
    planned, unknown, missing = option_mistakes(verb, options)
    if planned:
        raise OptionError(f"{planned} belong to the plan: plan_area(..., region=, tile_size=, overlap=)")
    if unknown:
        raise OptionError(f"{verb} takes no option {unknown}; its options are {verb_options(verb)[1]}")
    if missing:
        needs = " and ".join(f"the option {name}" + (f", e.g. {name}={EXAMPLES[name]!r}" if name in EXAMPLES else "") for name in missing)
        raise OptionError(f"{verb} needs {needs}")


def prepare_zone(zone: Zone, source: Source, verb: str, model: TerraMindModel, options: dict) -> Prepared:
    """The verb on the zone's grid, prepared on the source's prototype (nothing is read)."""
    check_options(verb, options)
    prototype = source.prototype(zone.grid)
    if "time" in prototype.dims:
        raise InputError("a run takes one date per pixel; use a composite (composite='median') or select a date")
    tiling = zone.tiling
    prepared = VERBS[verb].prepare(prototype, model=model, chunks=zone.region_size, tile_size=tiling.tile_size,
                                   overlap=tiling.overlap, **options)
    if not prepared.layout.tiling.grid.same_as(zone.grid) or prepared.layout.tiling.patch != tiling.patch:
        raise GridMismatchError(f"the source's grid is not the plan's grid for {zone.name}: plan an opened cube with "
                                "plan_grid(cube grid)")
    return prepared


def _reader(zone: Zone, source: Source, prepared: Prepared, options: dict) -> SourceReader:
    """How the zone's regions read ``source``: on the zone's grid, or its token grid for a token input."""
    tiles = prepared.layout.tiles
    grid = zone.grid.coarsened(tiles.patch) if tiles.token_input else zone.grid
    return SourceReader(source, grid, options.get("modalities") or list(tiles.modalities))


def run(plan: Plan, source: Source, verb: str, model: TerraMindModel, store_path, *, client=None,
        in_flight: int | None = None, gpu: str | bool = "auto", resume: bool = True, overwrite: bool = False,
        zarr_format: int = store.DEFAULT_ZARR_FORMAT, limit: int | None = None, retries: int = 1,
        overviews: bool = False, progress_bar: bool | None = None, **options) -> RunReport:
    """Run ``verb`` over ``plan`` reading ``source``, into the zarr store ``store_path``, region by region.

    The store gets one subgroup per zone (see the module docstring). Interrupted or partly failed? Call
    it again with the same arguments: regions already marked done are skipped, the rest are computed.

    Args:
        plan: from ``xterramind.planner.plan_area`` or ``xterramind.planner.plan_grid``.
        source: where the pixels come from, e.g. a ``xterramind.sources.StacSource``.
        verb: ``"embed"``, ``"generate"`` (with ``targets=``), ``"tokenize"`` (with ``modality=``),
            ``"detokenize"`` (with ``modality=``, reading a token grid, e.g. ``CubeSource(xterramind.open(tokens))``)
            or ``"predict"`` (with a fine-tuned model).
        model: a handle from ``xterramind.load_model`` (``xterramind.load_task`` for ``"predict"``); each worker
            loads its own copy once.
        store_path (str | os.PathLike): the run's zarr store (a local or shared path every worker can write to).
        client (distributed.Client | None): default the current client, else a local cluster for this call.
        in_flight: regions on the cluster at once (default: twice the cluster's threads, at least 4).
        gpu: ``"auto"`` puts model tasks on workers offering the ``GPU`` resource when any does; ``True``
            requires them; ``False`` lets any worker run them.
        resume: complete an existing store of this plan; ``False`` refuses to touch one.
        overwrite: delete whatever is at ``store_path`` first.
        zarr_format: 2 (default: every GDAL from 3.6, rasterio's wheels, QGIS), or 3 (GDAL 3.11 or newer).
        limit: compute at most this many regions (a trial run; the rest stays to do).
        retries: times a region task that raises is retried before the region counts as failed.
        overviews: once every region is written (no failure, no ``limit`` left), build each zone's coarser levels
            for viewers on the same cluster (``xterramind.overviews.build``).
        progress_bar: show a progress bar; default in Jupyter or a terminal, not in batch logs
            (``XTERRAMIND_PROGRESS=1`` or ``0`` decides).
        **options (Any): the verb's options (``batch_size``, ``seed``, ``layer``, ``modalities``, ...).

    Returns:
        What the run did; failed regions are listed there, not raised.

    Raises:
        InputError: a bad verb, option, ``limit`` or ``gpu`` setting, or a source whose grid is not the plan's.
        StoreError: the store holds something else, or another plan's zones.

    Example:
        >>> plan = plan_area((4.0, 43.0, 17.0, 52.3))
        >>> source = SyntheticSource(["S2L2A"])
        >>> report = runner.run(plan, source, "embed", model, "area.zarr", client=client, limit=10)
        >>> report = runner.run(plan, source, "generate", model, "lulc.zarr", targets=["LULC"], seed=0)
    """
    started = time.perf_counter()
    limit = whole_number("limit", limit, 1, optional=True)
    check_options(verb, options)  # these mistakes fail before a cluster starts
    check_model(model, VERBS[verb].takes)
    path, zones = Path(store_path).expanduser(), {zone.name: zone.crs for zone in plan.zones}
    store.check_run_root(path, zones, resume=resume, overwrite=overwrite)
    with _client(client) as active:
        resources = _resources(active, gpu)  # before anything is written
        threads = sum(w["nthreads"] for w in active.scheduler_info()["workers"].values())
        width = max(4, 2 * threads) if in_flight is None else in_flight
        if width < 1:
            raise OptionError(f"in_flight must be at least 1, got {width}")
        root = store.open_run_root(path, zones, resume=resume, overwrite=overwrite, zarr_format=zarr_format)
        todo, skipped = _regions_to_do(plan, source, verb, model, root, options, zarr_format=zarr_format)
        todo = todo[:limit] if limit is not None else todo
        report = RunReport(str(root), plan.regions, skipped, 0, 0, prepare_seconds=time.perf_counter() - started)
        log.info("%s: %d regions to do, %d already complete; %d at a time%s", root, len(todo), skipped, width,
                 ", model tasks on GPU workers" if resources else "")
        jobs = [region_job(work, index, executor.Stage(functools.partial(reader, work, index)), resources=resources,
                           name=f"{zone}-{index[0]}-{index[1]}") for zone, work, reader, index in todo]
        active.run(buffers.start)  # each worker's regions in the memory of the ones before, until the run ends
        try:
            executor.execute(jobs, f"running {root.name}", progress_bar, client=active, width=width, retries=retries,
                             keep_going=True, on_done=_recorder(report, [(zone, index) for zone, _, _, index in todo]))
        finally:
            active.run(buffers.stop)
        for scope in {work.share for _, work, _, _ in todo} - {None}:  # the parts left for regions that will not come
            active.run(halo.forget, scope)
        if overviews and not report.failed and report.written + report.skipped == report.regions:
            log.info("%s", overviews_of(root, progress=progress_bar, client=active))
    report.seconds = time.perf_counter() - started
    return report


def _regions_to_do(plan: Plan, source: Source, verb: str, model: TerraMindModel, root: Path, options: dict, *,
                   zarr_format: int):
    """Every zone's template (written or checked), and the regions still to do: ``(todo, skipped)``, each to
    do as ``(zone, work, reader, (row, col))``."""
    todo, skipped = [], 0
    for zone in plan.zones:
        prepared = prepare_zone(zone, source, verb, model, options)
        template = store.prepare(prepared.placeholder(), root / zone.name, resume=True, zarr_format=zarr_format)
        work, reader = RegionWork.of(prepared, template), _reader(zone, source, prepared, options)
        ledger = template.ledger()
        undone = ledger[zone.region_indices[:, 0], zone.region_indices[:, 1]] == 0
        outside = ledger == 0  # regions of the zone's grid that the area does not touch: never computed
        outside[zone.region_indices[:, 0], zone.region_indices[:, 1]] = False
        store.write_nodata(template, [tuple(index) for index in np.argwhere(outside)])
        skipped += int((~undone).sum())
        todo += [(zone.name, work, reader, index)
                 for index in work.ordered((int(row), int(col)) for row, col in zone.region_indices[undone])]
    store.consolidate(root)  # the zones' metadata in one place; region writes never change it
    return todo, skipped


def _recorder(report: RunReport, places: list):
    """What the run does as each region ends: the report, a log line every ``LOG_EVERY`` s, the bar's figures."""
    started = logged = time.perf_counter()

    def record(number: int, outcome) -> dict:
        nonlocal logged
        zone, index = places[number]
        if isinstance(outcome, Exception):  # a failed region is reported and left to do; the others go on
            report.failed.append((zone, index, f"{type(outcome).__name__}: {outcome}"))
            log.error("region %s row %d col %d failed: %s: %s", zone, *index, type(outcome).__name__, outcome)
        else:
            (_, tiles), (read_seconds, model_seconds, write_seconds) = outcome.value, outcome.seconds
            report.outcomes.append(RegionOutcome(zone, index, tiles, read_seconds, model_seconds, write_seconds,
                                                 outcome.workers[1]))
            report.tiles += tiles
            if tiles:
                report.written += 1
            else:
                report.empty += 1
        rate = report.tiles / (time.perf_counter() - started)
        finished = report.written + report.empty + len(report.failed)
        if time.perf_counter() - logged > LOG_EVERY or finished == len(places):
            logged = time.perf_counter()
            log.info("%d of %d regions done (%d without data, %d failed), %.1f tiles/s", finished, len(places),
                     report.empty, len(report.failed), rate)
        return {"tiles_per_s": f"{rate:.1f}", "failed": len(report.failed)}

    return record


def _resources(client, gpu) -> dict | None:
    offered = [w.get("resources", {}).get("GPU", 0) for w in client.scheduler_info()["workers"].values()]
    if gpu not in ("auto", True, False):
        raise OptionError(f"gpu must be 'auto', True or False, got {gpu!r}")
    if gpu is True and not any(offered):
        raise OptionError("gpu=True but no worker offers the GPU resource: start GPU workers with "
                         "`dask worker ... --resources GPU=1` (or dask-cuda), or pass gpu=False")
    return {"GPU": 1} if gpu is not False and any(offered) else None


@contextlib.contextmanager
def _client(client):
    if client is not None:
        yield client
        return
    from distributed import Client, default_client

    try:
        yield default_client()
        return
    except ValueError:
        pass
    with local_cluster() as cluster, Client(cluster) as local:
        yield local


_SCHEDULER_ROUTES = "distributed.scheduler.http.routes"
_SPAWNS_LOCK = threading.Lock()
_spawns = {"running": 0, "environ_before": {}}


@contextlib.contextmanager
def _environ_kept(keys):
    """Put back, after a worker spawn, the variables distributed writes into this process's ``os.environ`` to hand
    them to the worker (``OMP_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``, ``PYTHONHASHSEED``, ...: they must be
    there when it starts) and would otherwise leave there: the user's later subprocesses, and a torch not started
    yet, would run on one thread. They are there while a worker starts, until it is up. Spawns overlap (one worker
    per GPU), so the values from before the first are kept."""
    with _SPAWNS_LOCK:
        if not _spawns["running"]:
            _spawns["environ_before"] = {}
        for key in keys:
            _spawns["environ_before"].setdefault(key, os.environ.get(key))
        _spawns["running"] += 1
    try:
        yield
    finally:
        with _SPAWNS_LOCK:
            _spawns["running"] -= 1
            if not _spawns["running"]:
                for key, value in _spawns["environ_before"].items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


@contextlib.contextmanager
def model_worker_environ():
    """Within it, Nanny workers start without distributed's ``MALLOC_TRIM_THRESHOLD_``: setting it turns off
    glibc's dynamic mmap threshold, so every large tensor is a fresh mmap and TerraMind runs ~1.7x slower in
    the worker than in this process (measured on the tiny model, 2 threads). Use it around your own
    ``LocalCluster(...)`` of model workers too.

    Example:
        >>> with model_worker_environ():
        ...     cluster = LocalCluster(n_workers=2, threads_per_worker=1)
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {k: v for k, v in dask.config.get(key, {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({key: environ}):
        yield


def local_cluster():
    """A cluster on this machine: one worker per GPU (with the ``GPU`` resource) through dask-cuda when it
    is installed, else one worker using every core for torch.

    This is what ``run`` starts when no client is given; start it yourself to reuse it across runs. Unlike a
    plain ``LocalCluster`` it leaves this process's environment as it was, also when a worker is restarted.

    Example:
        >>> from distributed import Client
        >>> with local_cluster() as cluster, Client(cluster) as client:
        ...     report = runner.run(plan, source, "embed", model, "area.zarr", client=client)
    """
    import dask
    import torch
    from distributed import LocalCluster, Nanny

    class EnvironKeepingNanny(Nanny):
        async def instantiate(self):
            with _environ_kept([*self.pre_spawn_env, "__DASK_PARENT_PID"]):  # the latter names the worker's parent
                return await super().instantiate()

    cores = os.cpu_count() or 1
    options = {"worker_class": EnvironKeepingNanny, "dashboard_address": ":0"}
    # a scheduler without bokeh appends a route to this list in the global dask configuration: let it append to a copy
    with dask.config.set({_SCHEDULER_ROUTES: list(dask.config.get(_SCHEDULER_ROUTES))}), model_worker_environ():
        if torch.cuda.is_available():
            threads = max(2, cores // torch.cuda.device_count())  # one model task at a time (GPU=1); the rest write
            with contextlib.suppress(ImportError):
                from dask_cuda import LocalCUDACluster

                return LocalCUDACluster(resources={"GPU": 1}, threads_per_worker=threads, **options)
            return LocalCluster(n_workers=1, threads_per_worker=threads, resources={"GPU": 1}, **options)
        return LocalCluster(n_workers=1, threads_per_worker=1, env={"XTERRAMIND_TORCH_THREADS": str(cores)}, **options)


# -- dry runs -----------------------------------------------------------------------------------------

MEASURE_SECONDS = 3.0  # model time timed after the warm-up: a stable rate on a GPU, at least one region on a CPU
MEASURE_BATCHES = 8  # full batches a trial region holds at least (when the plan's regions are as large), so
# that, as in a run, its last partial batch weighs little


@dataclass
class Forecast:
    """What a run would do: per zone its grid, regions, tiles and output size, and the model time.

    ``str(forecast)`` gives a table, one row per zone, and the device-hours.

    Attributes:
        rows: per zone: its name, CRS, grid shape, regions, tiles and output bytes.
        tiles_per_second: the model speed the hours assume.
        measured_on: how that speed was found (measured on which model and device, or given).

    Example:
        >>> print(runner.forecast(plan, source, "embed", model))
    """

    rows: list[tuple[str, str, tuple[int, int], int, int, int]]  # zone, crs, grid shape, regions, tiles, bytes
    tiles_per_second: float
    measured_on: str

    @property
    def tiles(self) -> int:
        """Tiles the run would put through the model, over every zone."""
        return sum(row[4] for row in self.rows)

    @property
    def hours(self) -> float:
        """Model time in device-hours at ``tiles_per_second`` (reading and writing not counted)."""
        return self.tiles / self.tiles_per_second / 3600

    def __str__(self) -> str:
        labels = [_crs_label(row[1]) for row in self.rows]
        width = max(len("crs"), *map(len, labels)) + 2
        lines = [f"{'zone':<8}{'crs':<{width}}{'grid (px)':>22}{'regions':>10}{'tiles':>12}{'output':>11}"]
        for (zone, _, (height, width_px), regions, tiles, size), crs in zip(self.rows, labels, strict=True):
            lines.append(f"{zone:<8}{crs:<{width}}{f'{height:,} x {width_px:,}':>22}{regions:>10,}{tiles:>12,}"
                         f"{_size(size):>11}")
        regions, size = sum(r[3] for r in self.rows), sum(r[5] for r in self.rows)
        lines.append(f"{'total':<{8 + width}}{'':>22}{regions:>10,}{self.tiles:>12,}{_size(size):>11}")
        lines.append(f"model time: {self.hours:,.2f} device-hours at {self.tiles_per_second:,.1f} tiles/s "
                     f"({self.measured_on})")
        return "\n".join(lines)


def forecast(plan: Plan, source: Source, verb: str, model: TerraMindModel, *, tiles_per_second: float | None = None,
             **options) -> Forecast:
    """A dry run: what ``run`` would compute and write, and how long the model would take.

    Nothing is read from ``source`` but its prototype, and nothing is written; the verb is prepared on
    every zone, so a bad option fails here as it would in ``run``.

    Args:
        plan: the plan to cost.
        source: where the pixels would come from.
        verb: ``"embed"``, ``"generate"``, ``"tokenize"`` or ``"detokenize"``, as for ``run``.
        model: the model to run (and to time when ``tiles_per_second`` is not given). With
            ``tiles_per_second`` only its architecture counts: seeded random weights of the same model do.
        tiles_per_second: the model's speed; default measured now on ``model``'s device
            (``measure_tiles_per_second``: a few seconds on a GPU, more on a CPU).
        **options (Any): the verb's options, as for ``run``.

    Raises:
        InputError: a bad verb or option, or a ``tiles_per_second`` that is not a positive number.

    Example:
        >>> print(runner.forecast(plan, source, "embed", model))
        >>> runner.forecast(plan, source, "embed", model, tiles_per_second=250).hours
    """
    given = tiles_per_second
    number = isinstance(given, int | float) and not isinstance(given, bool)
    if given is not None and not (number and 0 < given < math.inf):  # not True, "fast", nan
        raise OptionError(f"tiles_per_second must be a positive number of tiles per second, got {given!r}")
    rows = []
    for zone in plan.zones:
        prepared = prepare_zone(zone, source, verb, model, options)
        placeholder = prepared.placeholder()
        variables = placeholder.data_vars.values() if isinstance(placeholder, xr.Dataset) else [placeholder]
        share = zone.pixel_count() / (zone.grid.height * zone.grid.width)  # only listed regions are written
        size = int(sum(v.size * v.dtype.itemsize for v in variables) * share)
        rows.append((zone.name, zone.crs, zone.grid.shape, len(zone.region_indices), zone.tile_count(prepared.cover), size))
    if given is None:
        given, measured_on = measure_tiles_per_second(plan.zones[0], source, verb, model, **options)
    else:
        measured_on = "given"
    return Forecast(rows, float(given), measured_on)


def measure_tiles_per_second(zone: Zone, source: Source, verb: str, model: TerraMindModel, *,
                             seconds: float = MEASURE_SECONDS, **options) -> tuple[float, str]:
    """Tiles per second of ``verb`` on ``model``'s device, timed as a run spends it: the runner's own model task
    (``xterramind.pipeline.model_stage``, with the worker's torch threads) on a trial region of synthetic pixels.

    The trial region is like one of ``zone``'s inner regions, or where those are larger, a square of whole tile strides
    holding at least ``MEASURE_BATCHES`` full batches: the device gets the batches of the run, not a handful of
    tiles whose fixed costs dominate (a token input, detokenize, is timed on the first region of ``source`` that
    holds data: there are no synthetic tokens). It runs once to warm up (the weights load, the device settles on
    the batch shapes), then again until ``seconds`` of model time are timed; tiles are counted as ``run`` counts them.

    Args:
        zone: the zone whose tiling and region size to time (every zone of a plan has the same).
        source: the run's source: which modalities the verb reads (their pixels here are synthetic).
        verb: ``"embed"``, ``"generate"``, ``"tokenize"`` or ``"detokenize"``.
        model: the model to time, on its own device and precision.
        seconds: model time to time after the warm-up (at least one run of the trial region).
        **options (Any): the verb's options, as for ``run``.

    Returns:
        The rate, and a line saying what it was measured on.

    Example:
        >>> rate, measured_on = measure_tiles_per_second(plan.zones[0], source, "embed", model, batch_size=16)
    """
    prepared = prepare_zone(zone, source, verb, model, options)
    if prepared.layout.tiles.token_input:  # there are no synthetic tokens: a region of the source with data
        work, index, windows = _first_with_data(zone, source, prepared, options)
    else:
        work, index, windows = _trial_region(zone, verb, model, prepared.layout.tiles.modalities, options)
    model_stage(windows, work=work, index=index)  # the warm-up
    tiles, spent = 0, 0.0
    while not tiles or spent < seconds:
        started = time.perf_counter()
        count = model_stage(windows, work=work, index=index)[1]
        tiles, spent = tiles + count, spent + time.perf_counter() - started
    return tiles / spent, (f"measured: {model.name} on {model.device.type}, {model.precision}, {tiles:,} tiles in "
                           f"{spent:.1f} s, regions of {count:,} tiles")


def _trial_region(zone: Zone, verb: str, model: TerraMindModel, modalities, options: dict):
    """The middle of 3 x 3 regions of synthetic pixels like one of ``zone``'s inner regions (or where those are
    larger, of ``MEASURE_BATCHES`` full batches): neighbours on every side, so a verb that covers its region with
    the tiles overlapping it (generate) gets as many as a run's inner regions do. ``(work, index, windows)``."""
    synthetic = SyntheticSource(modalities)
    options = {k: v for k, v in options.items() if k != "modalities"}  # the synthetic cube holds just those
    batch = prepare_zone(zone, synthetic, verb, model, options).layout.tiles.batch_for(model)
    tiling = zone.tiling
    stride, tile = tiling.rows.stride, tiling.tile_size // tiling.patch
    side = min(zone.region_size, max(math.ceil(math.sqrt(MEASURE_BATCHES * batch)), -(-tile // stride)) * stride)
    grid = PixelGrid(zone.crs, zone.grid.transform, 3 * side * tiling.patch, 3 * side * tiling.patch)
    trial = plan_grid(grid, region=side, tile_size=tiling.tile_size, overlap=tiling.overlap, patch=tiling.patch,
                      name=zone.name).zones[0]
    prepared = prepare_zone(trial, synthetic, verb, model, options)
    work = RegionWork.of(prepared, None)
    return work, (1, 1), _reader(trial, synthetic, prepared, options)(work, (1, 1))


def _first_with_data(zone: Zone, source: Source, prepared: Prepared, options: dict):
    """The first of the zone's regions whose input in ``source`` has a valid value: ``(work, index, windows)``."""
    work, reader = RegionWork.of(prepared, None), _reader(zone, source, prepared, options)
    for row, col in zone.region_indices:
        windows = reader(work, (int(row), int(col)))
        if windows is not None and work.tiles.valid(windows).any():
            return work, (int(row), int(col)), windows
    raise NoValidDataError("the source holds no valid value to time the model on; give the speed "
                           "(tiles_per_second=, --tiles-per-second)")


def _crs_label(crs: str) -> str:
    """``EPSG:32618`` for a CRS with a code (also one given as WKT), else its name: a table cell, not a WKT."""
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    code = parsed.to_epsg()
    return f"EPSG:{code}" if code else parsed.name


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} EB"
