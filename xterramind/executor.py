"""Running many jobs of a few stages each, here or on a Dask cluster, a bounded number at a time.

A job is one region's stages, run in order, each on the value of the one before: typically read ->
model -> write. A first stage may be ``Compute``: dask collections computed together (so a region task
that several outputs share runs once). The one difference between here and a cluster is where stages
run: here, a job's stages run one after the other on one of ``local_threads()`` threads; on a cluster,
every stage is a task of its own (the model stage can ask for the workers' ``GPU`` resource), chained
by futures, so a region's pixels go from the reader to the GPU to the writer without the driver.

Either way at most ``width`` jobs are in flight: memory stays bounded whatever the area, the scheduler
holds a few tasks per job in flight, and Ctrl-C stops within about one job's time (here the jobs in
flight finish; on a cluster they are cancelled): ``Interrupted`` says how far it got.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import dask
import dask.array as da

from . import buffers, graphs, progress
from .errors import Interrupted

FIRST, COMPUTED, STAGED = "first", "computed", "staged"  # what a stage is called on


@dataclass(frozen=True)
class Compute:
    """A first stage: dask collections computed together; the next stage gets the tuple of their values."""

    collections: tuple

    def __call__(self) -> tuple:
        collections = [graphs.culled(c) for c in self.collections]  # a window's tasks, not the cube's (graphs)
        arrays = [c for c in collections if isinstance(c, da.Array) and not math.isnan(c.size)]
        if len(arrays) < len(collections):
            return dask.compute(*collections, scheduler="sync")
        # each chunk stored into its place in one array: no concatenation (a region's window is ~30 chunk pieces);
        # the arrays reused from region to region inside a write (``xterramind.buffers``)
        targets = [buffers.empty(array.shape, array.dtype) for array in arrays]
        da.store(arrays, targets, lock=False, scheduler="sync")
        return tuple(targets)


@dataclass(frozen=True)
class Stage:
    """A stage: ``function(value of the stage before)`` (a first stage: ``function()``); on a cluster it runs
    on a worker offering ``resources`` (e.g. ``{"GPU": 1}``)."""

    function: Callable
    resources: dict | None = None


@dataclass(frozen=True)
class Job:
    """One region's stages, in order; ``name`` makes its tasks' keys readable on a cluster's dashboard."""

    stages: tuple
    name: str = "job"


@dataclass(frozen=True)
class Done:
    """A finished job: its last stage's value, and each function stage's seconds and worker."""

    value: object
    seconds: tuple[float, ...]
    workers: tuple[str, ...]


def local_threads() -> int:
    """Jobs run at once on this machine: ``dask.config`` ``num_workers``, else one per core, and 2 at least (one
    region's batches on the device lane while another is read). One more than the cores was tried: on 2 cores it
    kept the lane no busier and cost generation 15-25 % more CPU (contention for its large float buffers)."""
    return dask.config.get("num_workers", None) or max(2, os.cpu_count() or 1)


def active_client():
    """The distributed client of this context, or None."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def execute(jobs: Sequence[Job], description: str, progress_bar: bool | None = None, *, client=None,
        width: int | None = None, retries: int = 0, keep_going: bool = False,
        on_done: Callable[[int, Done | Exception], dict | None] | None = None,
        resume: str | None = "run the same call again to resume") -> list:
    """Run ``jobs``; return their ``Done`` in order (with ``keep_going``, a failed job's exception instead).

    ``client``: a distributed client, default the active one; without one the jobs run here. ``width``: jobs
    in flight (default: ``local_threads()`` here, twice the cluster's threads and at least 4 there).
    ``retries``: times a failing stage is tried again. ``on_done(index, done)`` sees each job as it ends and
    may return progress-bar figures. Ctrl-C raises ``Interrupted``, its message ending with ``resume`` (how
    to finish the work; None: nothing does).
    """
    client = active_client() if client is None else client
    results, finished = [None] * len(jobs), 0
    with progress.bar(len(jobs), description, progress_bar) as ticker:

        def record(index: int, outcome) -> None:
            nonlocal finished
            results[index], finished = outcome, finished + 1
            figures = on_done(index, outcome) if on_done else None
            ticker.update(1)
            if figures:
                ticker.set_postfix(figures, refresh=False)

        try:
            if client is None:
                _here(jobs, width or local_threads(), retries, keep_going, record)
            else:
                threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
                _on_cluster(client, jobs, width or max(4, 2 * threads), retries, keep_going, record)
        except KeyboardInterrupt:
            again = f"; {resume}" if resume else ""
            raise Interrupted(f"{description}: interrupted after {finished} of {len(jobs)} regions{again}") from None
    return results


def worker_address() -> str:
    """The address of the Dask worker running this, or ``"local"``."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _timed(function: Callable, previous, after: str):
    """Run one function stage on what came before; carry the value on with the seconds and workers so far."""
    started = time.perf_counter()
    if after == FIRST:
        value, seconds, workers = function(), (), ()
    elif after == COMPUTED:
        value, seconds, workers = function(tuple(previous)), (), ()
    else:
        value, seconds, workers = function(previous[0]), previous[1], previous[2]
    return value, (*seconds, time.perf_counter() - started), (*workers, worker_address())


def _stages(job: Job) -> tuple:
    """The job's stages; one that ends with a ``Compute`` gets a stage handing on its values, so that a job's
    value is the same tuple here and on a cluster."""
    return (*job.stages, Stage(tuple)) if isinstance(job.stages[-1], Compute) else job.stages


def _done(job: Job, carried) -> Done:
    """The job's ``Done`` from its last stage's ``(value, seconds, workers)``; the stage ``_stages`` added is not
    timed."""
    return Done(carried[0], (), ()) if isinstance(job.stages[-1], Compute) else Done(*carried)


def _run_here(job: Job, retries: int) -> Done:
    carried, after = None, FIRST
    for stage in _stages(job):
        for attempt in range(retries + 1):
            try:
                if isinstance(stage, Compute):
                    carried, after = stage(), COMPUTED
                else:
                    carried, after = _timed(stage.function, carried, after), STAGED
                break
            except Exception:
                if attempt == retries:
                    raise
    return _done(job, carried)


def _here(jobs: Sequence[Job], width: int, retries: int, keep_going: bool, record) -> None:
    pending = iter(enumerate(jobs))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="xterramind") as pool:
        running = {}

        def submit() -> None:
            item = next(pending, None)
            if item is not None:
                running[pool.submit(_run_here, item[1], retries)] = item[0]

        for _ in range(width):
            submit()
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    record(running.pop(future), _outcome(future, keep_going))
                    submit()
        except KeyboardInterrupt:  # start nothing new; the jobs in flight finish (leaving the pool waits for them)
            for future in wait(running).done:
                if future.exception() is None:
                    record(running.pop(future), future.result())
            raise


def _outcome(future, keep_going: bool):
    if not keep_going:
        return future.result()
    try:
        return future.result()
    except Exception as error:  # reported, not raised: the other jobs go on
        return error


def _on_cluster(client, jobs: Sequence[Job], width: int, retries: int, keep_going: bool, record) -> None:
    """A ``Compute`` stage is one task computing its collections' graph, culled here, synchronously on a worker
    (as ``_run_here`` does), not their keys handed to the scheduler: jobs' graphs share keys (the input chunks
    of overlapping windows), each optimised on its own into different tasks for one key, and a scheduler given
    two definitions of a key can lose track of it and its workers (seen: every worker gone, the run hung)."""
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    pending = iter(enumerate(jobs))
    held = {}  # last future -> (every future of the job, its index)
    finished = as_completed(loop=client.loop)  # the client given, which need not be the current one

    def submit() -> None:
        item = next(pending, None)
        if item is None:
            return
        index, job = item
        futures, previous, after = [], None, FIRST
        for number, stage in enumerate(_stages(job)):
            key = f"xterramind-{job.name}-{index}.{number}-{run_id}"
            if isinstance(stage, Compute):  # one task computing the region's own culled graph (see _on_cluster)
                collections = dask.optimize(*map(graphs.culled, stage.collections))  # the window's tasks alone
                previous = client.submit(Compute(collections), pure=False, retries=retries, key=key)
                after = COMPUTED
            else:
                previous = client.submit(_timed, stage.function, previous, after, pure=False, retries=retries,
                                         resources=stage.resources, key=key)
                after = STAGED
            futures.append(previous)
        held[previous] = (futures, index, job)
        finished.add(previous)

    for _ in range(width):
        submit()
    try:
        for future in finished:
            futures, index, job = held.pop(future)
            outcome = _outcome(future, keep_going)
            if not isinstance(outcome, Exception):
                outcome = _done(job, outcome)
            for done in futures:  # the scheduler forgets them before the next job goes out
                done.release()
            record(index, outcome)
            submit()
    finally:
        client.cancel([f for futures, _, _ in held.values() for f in futures])
