"""Running many region tasks, with a progress bar: a widget in Jupyter, a bar in a terminal,
nothing in CI logs or other non-interactive output (``XTERRAMIND_PROGRESS=1`` forces it on, ``0`` off).

On a distributed cluster the tasks go to its scheduler. Locally each region is computed on its own,
a few at a time, so memory stays bounded by the regions in flight whatever the area.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

import dask


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


def _client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def run(tasks: list, description: str, progress: bool | None = None) -> list:
    """Compute dask-delayed ``tasks`` and return their results in order: on the distributed client
    if one is active, else on a local pool of ``dask.config`` ``num_workers`` threads (default: 2)."""
    with bar(len(tasks), description, progress) as ticker:
        client = _client()
        if client is not None:
            from distributed import as_completed as completed_futures

            futures = client.compute(tasks)
            for _ in completed_futures(futures):
                ticker.update(1)
            return client.gather(futures)
        workers = dask.config.get("num_workers", None) or min(2, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xterramind") as pool:
            futures = {pool.submit(dask.compute, task, scheduler="sync"): i for i, task in enumerate(tasks)}
            results = [None] * len(tasks)
            for future in as_completed(futures):
                results[futures[future]] = future.result()[0]
                ticker.update(1)
            return results
