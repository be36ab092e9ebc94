"""Running many region jobs, with a progress bar: a widget in Jupyter, a bar in a terminal,
nothing in CI logs or other non-interactive output (``XTERRAMIND_PROGRESS=1`` forces it on, ``0`` off).

A job is a few dask collections computed together (so a region task that several outputs share runs
once) and what to do with their values (write them). On a distributed cluster the jobs go to its
scheduler; locally each job is computed on its own in a pool of threads. Either way only a few jobs
are in flight at once, so memory stays bounded whatever the area and Ctrl-C stops within about one
job's time: the jobs in flight finish, no new one starts, and ``Interrupted`` says how far it got.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import dask

from .errors import Interrupted


def wanted(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    forced = os.environ.get("XTERRAMIND_PROGRESS")
    if forced is not None:
        return forced not in ("0", "false", "no", "")
    return "ipykernel" in sys.modules or sys.stderr.isatty()


def bar(total: int, description: str, progress: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="region", disable=not wanted(progress), dynamic_ncols=True)


def _only(value):
    return value


@dataclass(frozen=True)
class Job:
    """Dask collections computed together, and ``then(*their values)``: the job's result."""

    parts: tuple
    then: Callable = _only

    def run_here(self):
        return self.then(*dask.compute(*self.parts, scheduler="sync"))


def _client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def local_threads() -> int:
    """Jobs run at once on this machine: ``dask.config`` ``num_workers``, else 2 (or 1 on one core)."""
    return dask.config.get("num_workers", None) or min(2, os.cpu_count() or 1)


def run(jobs: Sequence[Job], description: str, progress: bool | None = None, *,
        resume: str | None = "run the same call again to resume") -> list:
    """Run ``jobs`` and return their results in order: on the distributed client if one is active, else
    on ``local_threads()`` threads. Ctrl-C raises ``Interrupted`` once the jobs in flight are done; its
    message ends with ``resume``, how to finish the work (None: nothing finishes it)."""
    results, done = [None] * len(jobs), 0
    with bar(len(jobs), description, progress) as ticker:

        def tick() -> None:
            nonlocal done
            done += 1
            ticker.update(1)

        client = _client()
        try:
            if client is not None:
                _on_cluster(client, jobs, results, tick)
            else:
                _here(jobs, results, tick)
        except KeyboardInterrupt:
            again = f"; {resume}" if resume else ""
            raise Interrupted(f"{description}: interrupted after {done} of {len(jobs)} regions{again}") from None
    return results


def _here(jobs: Sequence[Job], results: list, tick: Callable[[], None]) -> None:
    width = local_threads()
    pending = iter(enumerate(jobs))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="xterramind") as pool:
        running = {}

        def submit() -> None:
            item = next(pending, None)
            if item is not None:
                running[pool.submit(item[1].run_here)] = item[0]

        for _ in range(width):
            submit()
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    results[running.pop(future)] = future.result()
                    tick()
                    submit()
        except KeyboardInterrupt:  # start nothing new; the jobs in flight finish (leaving the pool waits for them)
            for future in wait(running).done:
                if future.exception() is None:
                    tick()
            raise


def _on_cluster(client, jobs: Sequence[Job], results: list, tick: Callable[[], None]) -> None:
    from distributed import as_completed

    width = max(4, 2 * sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()))
    pending = iter(enumerate(jobs))
    held = {}  # job future -> (its parts' futures, its index)
    finished = as_completed()

    def submit() -> None:
        item = next(pending, None)
        if item is not None:
            index, job = item
            parts = client.compute(list(job.parts))
            future = client.submit(job.then, *parts, pure=False)
            held[future] = (parts, index)
            finished.add(future)

    for _ in range(width):
        submit()
    try:
        for future in finished:
            parts, index = held.pop(future)
            results[index] = future.result()
            for done in (future, *parts):
                done.release()
            tick()
            submit()
    finally:
        client.cancel([f for future, (parts, _) in held.items() for f in (future, *parts)])
