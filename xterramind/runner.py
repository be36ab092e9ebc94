"""Running a verb over a planned area on a Dask cluster: in waves, resumable, surviving lost workers.

The store is a zarr group with one subgroup per zone of the plan (``utm33n``, ...), each an ordinary
xterramind store: the verb's georeferenced result template, written once (and on a rerun checked, never
replaced), and its ledger. Each region of the plan becomes three tasks:

- ``read`` (any worker): ask the source whether the window can hold data, read it (region plus halo),
  cut it into the verb's modalities; nothing when it has no valid pixel;
- ``model`` (the workers offering the ``GPU`` resource, when any does): run the verb's region task on
  the worker's cached model; no model work for a region without valid input;
- ``write`` (any worker; Dask keeps it where the blocks are, on another thread): write the region into
  the template, then mark it in the ledger. Compressing a region takes longer than the GPU's forward
  passes (TerraMind-B float32 embeddings), so it must not hold the GPU resource.

At most ``in_flight`` regions are on the cluster at once, whatever the area: a new region goes out as each
one finishes and the finished one is released, so the scheduler holds at most ``3 * (in_flight + 1)``
tasks (the one more: a release can reach the scheduler just after the next region's tasks). Regions marked in the ledger
are never recomputed: a run killed at any point is finished by the same call run again, which redoes only
what was in flight or failed. Region tasks are deterministic, so a region run twice (a lost worker, a
dead driver whose last tasks still finished) writes the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from . import progress, store
from .engine import Verb, check_model, embed_verb, valid_pixels
from .errors import InputError
from .generate import generate_verb, tokenize_verb
from .grid import PixelGrid, Region, Tiling, region_at
from .modalities import resolve
from .models.handle import TerraMindModel
from .planner import Plan, Zone, plan_grid
from .sources import Source, SyntheticSource

__all__ = ["Forecast", "RegionOutcome", "RunReport", "forecast", "local_cluster", "measure_tiles_per_second", "run"]

log = logging.getLogger("xterramind.run")

VERBS: dict[str, Callable[..., Verb]] = {
    "embed": lambda cube, model, **options: embed_verb(cube, model, **options),
    "generate": lambda cube, model, *, targets, **options: generate_verb(cube, targets, model, **options),
    "tokenize": lambda cube, model, *, modality, **options: tokenize_verb(cube, modality, model, **options),
}
RUN_ATTR = "xterramind_run"  # on the store's root group: what ran, zone by zone
LOG_EVERY = 30.0  # seconds between progress lines in the log (batch jobs have no progress bar)


@dataclass(frozen=True)
class RegionWork:
    """What the tasks of one zone's regions need: small and picklable (the model travels as its recipe)."""

    zone: str
    source: Source
    tiling: Tiling
    chunk: int
    cover: bool
    modalities: object  # the verb's ``modalities`` option, resolved again on every window
    nodata: tuple
    task: Callable
    target: store.Target

    @property
    def grid(self) -> PixelGrid:
        return self.tiling.grid

    def region(self, row: int, col: int) -> Region:
        return region_at(self.tiling, self.chunk, row, col, self.cover)


@dataclass(frozen=True)
class RegionOutcome:
    """How one region went: where it ran and where its time went, for finding slow workers or sources.

    Attributes:
        zone: the zone's name, e.g. ``"utm32n"``.
        cell: the region's row and column in the zone's region lattice.
        tiles: tiles run through the model (0: the region had no valid input).
        read_seconds: reading the window from the source.
        model_seconds: running the verb.
        write_seconds: writing the region and marking it in the ledger.
        worker: the address of the worker that computed it (``"local"`` outside a cluster).

    Example:
        >>> slowest = max(report.outcomes, key=lambda outcome: outcome.read_seconds)
        >>> slowest.zone, slowest.cell, slowest.worker
    """

    zone: str
    cell: tuple[int, int]
    tiles: int  # tiles run through the model (0: no valid input)
    read_seconds: float
    model_seconds: float
    write_seconds: float
    worker: str


def read_region(work: RegionWork, row: int, col: int) -> tuple[list[np.ndarray] | None, float]:
    """The region's window, cut into the verb's modalities (raw units), or None without a valid pixel."""
    started = time.perf_counter()
    region = work.region(row, col)
    window = (region.y.window, region.x.window)
    cube = work.source.read(work.grid, window) if work.source.covers(work.grid, window) else None
    if cube is None:
        return None, time.perf_counter() - started
    windows = [np.asarray(item.data.values) for item in resolve(cube, work.modalities)]
    expected = (window[0][1] - window[0][0], window[1][1] - window[1][0])
    if any(w.shape[-2:] != expected for w in windows):
        raise InputError(f"the source gave a {windows[0].shape[-2:]} window where {expected} px were asked for")
    valid = valid_pixels(windows, work.nodata).any()
    return (windows if valid else None), time.perf_counter() - started


def model_region(pixels: tuple[list[np.ndarray] | None, float], work: RegionWork, row: int, col: int
                 ) -> tuple[list[np.ndarray] | None, RegionOutcome]:
    """Run the verb on the region's pixels: its blocks in the store's variable order (None without valid
    input), and the region's timings so far."""
    from . import runtime

    windows, read_seconds = pixels
    runtime.use_thread_setting()
    started = time.perf_counter()
    if windows is None:
        return None, RegionOutcome(work.zone, (row, col), 0, read_seconds, 0.0, 0.0, _worker_address())
    region = work.region(row, col)
    blocks = work.task(*windows, region=region)
    outcome = RegionOutcome(work.zone, (row, col), region.tile_count, read_seconds, time.perf_counter() - started,
                            0.0, _worker_address())
    return [blocks[name] for name in work.target.layout.variables], outcome


def write_region(modelled: tuple[list[np.ndarray] | None, RegionOutcome], work: RegionWork, row: int, col: int
                 ) -> RegionOutcome:
    """Write the region's blocks into the template, then mark it done (only mark it without valid input)."""
    blocks, outcome = modelled
    started = time.perf_counter()
    if blocks is None:
        store.mark_empty(work.target, (row, col))
    else:
        work.target.write(blocks, (row, col))
    return dataclasses.replace(outcome, write_seconds=time.perf_counter() - started)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except ValueError:
        return "local"


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
    tiles: int = 0
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


def prepare_zone(zone: Zone, source: Source, verb: str, model: TerraMindModel, options: dict) -> Verb:
    """The verb on the zone's grid, prepared on the source's prototype (nothing is read)."""
    if verb not in VERBS:
        raise InputError(f"verb must be one of {sorted(VERBS)}, got {verb!r}")
    planned = sorted({"chunks", "tile_size", "overlap"} & set(options))
    if planned:
        raise InputError(f"{planned} belong to the plan: plan_area(..., region=, tile_size=, overlap=)")
    prototype = source.prototype(zone.grid)
    if "time" in prototype.dims:
        raise InputError("a run takes one date per pixel; use a composite (composite='median') or select a date")
    tiling = zone.tiling
    try:
        prepared = VERBS[verb](prototype, model, chunks=zone.chunk, tile_size=tiling.tile_size, overlap=tiling.overlap,
                               **options)
    except TypeError as error:
        raise InputError(f"{verb}: {error}") from None
    if not prepared.plan.tiling.grid.same_as(zone.grid) or prepared.plan.tiling.patch != tiling.patch:
        raise InputError(f"the source's grid is not the plan's grid for {zone.name}: plan an opened cube with plan_grid(cube grid)")
    return prepared


def run(plan: Plan, source: Source, verb: str, model: TerraMindModel, store_path, *, client=None,
        in_flight: int | None = None, gpu: str | bool = "auto", resume: bool = True, overwrite: bool = False,
        zarr_format: int = 3, limit: int | None = None, retries: int = 1, progress_bar: bool | None = None,
        **options) -> RunReport:
    """Run ``verb`` over ``plan`` reading ``source``, into the zarr store ``store_path``, region by region.

    The store gets one subgroup per zone (see the module docstring). Interrupted or partly failed? Call
    it again with the same arguments: regions already marked done are skipped, the rest are computed.

    Args:
        plan: from ``xterramind.planner.plan_area`` or ``xterramind.planner.plan_grid``.
        source: where the pixels come from, e.g. a ``xterramind.sources.StacSource``.
        verb: ``"embed"``, ``"generate"`` (with ``targets=``) or ``"tokenize"`` (with ``modality=``).
        model: a handle from ``xterramind.load_model``; each worker loads its own copy once.
        store_path (str | os.PathLike): the run's zarr store (a local or shared path every worker can write to).
        client (distributed.Client | None): default the current client, else a local cluster for this call.
        in_flight: regions on the cluster at once (default: twice the cluster's threads, at least 4).
        gpu: ``"auto"`` puts model tasks on workers offering the ``GPU`` resource when any does; ``True``
            requires them; ``False`` lets any worker run them.
        resume: complete an existing store of this plan; ``False`` refuses to touch one.
        overwrite: delete whatever is at ``store_path`` first.
        zarr_format: 3, or 2 for GDAL 3.6-3.10 (QGIS).
        limit: compute at most this many regions (a trial run; the rest stays to do).
        retries: times a region task that raises is retried before the region counts as failed.
        progress_bar: show a progress bar; default in Jupyter or a terminal, not in batch logs
            (``XTERRAMIND_PROGRESS=1`` or ``0`` decides).
        **options (Any): the verb's options (``batch_size``, ``seed``, ``layer``, ``modalities``, ...).

    Returns:
        What the run did; failed regions are listed there, not raised.

    Raises:
        InputError: a bad verb, option or ``gpu`` setting, or a source whose grid is not the plan's.
        StoreError: the store holds something else, or another plan's zones.

    Example:
        >>> plan = plan_area((4.0, 43.0, 17.0, 52.3))
        >>> source = SyntheticSource(["S2L2A"])
        >>> report = runner.run(plan, source, "embed", model, "area.zarr", client=client, limit=10)
        >>> report = runner.run(plan, source, "generate", model, "lulc.zarr", targets=["LULC"], seed=0)
    """
    started = time.perf_counter()
    check_model(model)
    with _client(client) as active:
        resources = _resources(active, gpu)  # before anything is written
        threads = sum(w["nthreads"] for w in active.scheduler_info()["workers"].values())
        width = max(4, 2 * threads) if in_flight is None else in_flight
        if width < 1:
            raise InputError(f"in_flight must be at least 1, got {width}")
        root, todo, skipped = _prepare_stores(plan, source, verb, model, Path(store_path).expanduser(), options,
                                              resume=resume, overwrite=overwrite, zarr_format=zarr_format)
        todo = todo[:limit] if limit is not None else todo
        report = RunReport(str(root), plan.regions, skipped, 0, 0, prepare_seconds=time.perf_counter() - started)
        log.info("%s: %d regions to do, %d already complete; %d at a time%s", root, len(todo), skipped, width,
                 ", model tasks on GPU workers" if resources else "")
        _submit_in_waves(active, todo, width, resources, retries, report, progress_bar)
    report.seconds = time.perf_counter() - started
    return report


def _prepare_stores(plan: Plan, source: Source, verb: str, model: TerraMindModel, path: Path, options: dict, *,
                    resume: bool, overwrite: bool, zarr_format: int):
    """Every zone's template (written or checked), and the regions still to do: ``(root, todo, skipped)``."""
    root = _open_root(path, plan, resume=resume, overwrite=overwrite, zarr_format=zarr_format)
    todo, skipped = [], 0
    for zone in plan.zones:
        prepared = prepare_zone(zone, source, verb, model, options)
        target = store.prepare(prepared.placeholder(), root / zone.name, resume=True, zarr_format=zarr_format)
        modalities = options.get("modalities") or list(prepared.plan.tiles.modalities)
        work = RegionWork(zone.name, source, zone.tiling, zone.chunk, prepared.cover, modalities,
                          prepared.plan.tiles.nodata, prepared.task, target)
        undone = target.ledger()[zone.cells[:, 0], zone.cells[:, 1]] == 0
        skipped += int((~undone).sum())
        todo += [(work, int(row), int(col)) for row, col in zone.cells[undone]]
    store.consolidate(root)  # the zones' metadata in one place; region writes never change it
    return root, todo, skipped


def _submit_in_waves(client, todo, width: int, resources, retries: int, report: RunReport, progress_bar) -> None:
    """Keep at most ``width`` regions on the cluster; as one finishes, the next goes out."""
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    pending = iter(todo)
    held = {}  # write future -> (its read and model futures, the region)
    finished = as_completed()

    def submit_next() -> bool:
        item = next(pending, None)
        if item is None:
            return False
        work, row, col = item
        name = f"{work.zone}-{row}-{col}-{run_id}"
        pixels = client.submit(read_region, work, row, col, key=f"xterramind-read-{name}", retries=retries)
        modelled = client.submit(model_region, pixels, work, row, col, key=f"xterramind-model-{name}",
                                 resources=resources, retries=retries)
        written = client.submit(write_region, modelled, work, row, col, key=f"xterramind-write-{name}", retries=retries)
        held[written] = ((pixels, modelled), (work.zone, (row, col)))
        finished.add(written)
        return True

    for _ in range(width):
        if not submit_next():
            break
    started = logged = time.perf_counter()
    with progress.bar(len(todo), "regions", progress_bar) as ticker:
        try:
            for future in finished:
                upstream, (zone, cell) = held.pop(future)
                try:
                    outcome = future.result()
                except Exception as error:  # a failed region is reported and left to do; the others go on
                    report.failed.append((zone, cell, f"{type(error).__name__}: {error}"))
                    log.error("region %s row %d col %d failed: %s: %s", zone, *cell, type(error).__name__, error)
                else:
                    report.outcomes.append(outcome)
                    report.tiles += outcome.tiles
                    if outcome.tiles:
                        report.written += 1
                    else:
                        report.empty += 1
                for done in (future, *upstream):  # the scheduler forgets them before the next goes out
                    done.release()
                ticker.update(1)
                rate = report.tiles / (time.perf_counter() - started)
                ticker.set_postfix(tiles_per_s=f"{rate:.1f}", failed=len(report.failed), refresh=False)
                finished_count = report.written + report.empty + len(report.failed)
                if time.perf_counter() - logged > LOG_EVERY or finished_count == len(todo):
                    logged = time.perf_counter()
                    log.info("%d of %d regions done (%d without data, %d failed), %.1f tiles/s", finished_count,
                             len(todo), report.empty, len(report.failed), rate)
                submit_next()
        finally:
            client.cancel([f for written, (upstream, _) in held.items() for f in (written, *upstream)])


def _resources(client, gpu) -> dict | None:
    offered = [w.get("resources", {}).get("GPU", 0) for w in client.scheduler_info()["workers"].values()]
    if gpu not in ("auto", True, False):
        raise InputError(f"gpu must be 'auto', True or False, got {gpu!r}")
    if gpu is True and not any(offered):
        raise InputError("gpu=True but no worker offers the GPU resource: start GPU workers with "
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


def local_cluster():
    """A cluster on this machine: one worker per GPU (with the ``GPU`` resource) through dask-cuda when it
    is installed, else one worker using every core for torch.

    This is what ``run`` starts when no client is given; start it yourself to reuse it across runs.

    Example:
        >>> from distributed import Client
        >>> with local_cluster() as cluster, Client(cluster) as client:
        ...     report = runner.run(plan, source, "embed", model, "area.zarr", client=client)
    """
    import torch
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    if torch.cuda.is_available():
        threads = max(2, cores // torch.cuda.device_count())  # one model task at a time (GPU=1); the rest write
        with contextlib.suppress(ImportError):
            from dask_cuda import LocalCUDACluster

            return LocalCUDACluster(resources={"GPU": 1}, threads_per_worker=threads, dashboard_address=":0")
        return LocalCluster(n_workers=1, threads_per_worker=threads, resources={"GPU": 1}, dashboard_address=":0")
    return LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                        env={"XTERRAMIND_TORCH_THREADS": str(cores)})


def _open_root(path: Path, plan: Plan, *, resume: bool, overwrite: bool, zarr_format: int) -> Path:
    """The store's root group: created, or an earlier run's reopened (its zones must be this plan's)."""
    zones = {zone.name: zone.crs for zone in plan.zones}
    if path.exists() and overwrite:
        import shutil

        shutil.rmtree(path)
    if path.exists():
        try:
            previous = zarr.open_group(str(path), mode="r").attrs[RUN_ATTR]
        except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
            raise store.StoreError(f"{path} exists and is not an xterramind run store; pick another path or pass overwrite=True") from None
        if not resume:
            raise store.StoreError(f"{path} exists; pass resume=True to complete it, or overwrite=True to replace it")
        if previous["zones"] != zones:
            raise store.StoreError(f"{path} holds zones {sorted(previous['zones'])}, this plan has {sorted(zones)}; "
                                   "write to another path or pass overwrite=True")
        return path
    zarr.open_group(str(path), mode="w-", zarr_format=zarr_format).attrs[RUN_ATTR] = {"zones": zones}
    return path


# -- dry runs -----------------------------------------------------------------------------------------


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
        lines = [f"{'zone':<8}{'crs':<12}{'grid (px)':>22}{'regions':>10}{'tiles':>12}{'output':>11}"]
        for zone, crs, (height, width), regions, tiles, size in self.rows:
            lines.append(f"{zone:<8}{crs:<12}{f'{height:,} x {width:,}':>22}{regions:>10,}{tiles:>12,}{_size(size):>11}")
        regions, size = sum(r[3] for r in self.rows), sum(r[5] for r in self.rows)
        lines.append(f"{'total':<20}{'':>22}{regions:>10,}{self.tiles:>12,}{_size(size):>11}")
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
        verb: ``"embed"``, ``"generate"`` or ``"tokenize"``, as for ``run``.
        model: the model to run (and to time when ``tiles_per_second`` is not given).
        tiles_per_second: the model's speed; default measured now on ``model``'s device with synthetic
            tiles (a few seconds, more on a CPU).
        **options (Any): the verb's options, as for ``run``.

    Example:
        >>> print(runner.forecast(plan, source, "embed", model))
        >>> runner.forecast(plan, source, "embed", model, tiles_per_second=250).hours
    """
    rows = []
    for zone in plan.zones:
        prepared = prepare_zone(zone, source, verb, model, options)
        placeholder = prepared.placeholder()
        variables = placeholder.data_vars.values() if isinstance(placeholder, xr.Dataset) else [placeholder]
        share = zone.pixel_count() / (zone.grid.height * zone.grid.width)  # only listed regions are written
        size = int(sum(v.size * v.dtype.itemsize for v in variables) * share)
        rows.append((zone.name, zone.crs.replace("EPSG:", "EPSG "), zone.grid.shape, len(zone.cells),
                     zone.tile_count(prepared.cover), size))
    if tiles_per_second is None:
        tiles_per_second, measured_on = measure_tiles_per_second(verb, model, prepared.plan.tiles.modalities, options)
    else:
        measured_on = "given"
    return Forecast(rows, float(tiles_per_second), measured_on)


def measure_tiles_per_second(verb: str, model: TerraMindModel, modalities, options: dict, tiles: int = 3) -> tuple[float, str]:
    """Tiles per second of ``verb`` on ``model``'s device: one region of ``tiles`` x ``tiles`` synthetic
    tiles, run twice (the first loads the model), the second timed.

    Args:
        verb: ``"embed"``, ``"generate"`` or ``"tokenize"``.
        model: the model to time, on its own device and precision.
        modalities (Sequence[str]): the input modalities, e.g. ``["S2L2A"]``.
        options: the verb's options (``overlap`` also sets the trial's tiling).
        tiles: tiles per side of the trial region.

    Returns:
        The rate, and a line saying what it was measured on.

    Example:
        >>> rate, measured_on = measure_tiles_per_second("embed", model, ["S2L2A"], {"batch_size": 16})
    """
    from affine import Affine

    patch, tile_size, overlap = model.config.patch_size, model.config.image_size, options.get("overlap", 32)
    side = tiles * (tile_size - overlap)
    grid = PixelGrid("EPSG:32632", Affine(10, 0, 500_000, 0, -10, 5_000_000), side, side)
    stride = (tile_size - overlap) // patch
    trial = plan_grid(grid, region=-(-side // patch // stride) * stride, tile_size=tile_size, overlap=overlap, patch=patch)
    source = SyntheticSource(modalities)
    prepared = prepare_zone(trial.zones[0], source, verb, model, {k: v for k, v in options.items() if k != "modalities"})
    region = trial.zones[0].region(0, 0, prepared.cover)
    window = source.read(grid, (region.y.window, region.x.window))
    windows = [np.asarray(item.data.values) for item in resolve(window, list(prepared.plan.tiles.modalities))]
    prepared.task(*windows, region=region)
    started = time.perf_counter()
    prepared.task(*windows, region=region)
    rate = region.tile_count / (time.perf_counter() - started)
    return rate, f"measured: {model.name} on {model.device.type}, {model.precision}, {region.tile_count} tiles"


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} EB"
