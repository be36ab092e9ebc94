"""Running many region tasks with a progress bar: a widget in Jupyter, a bar in a terminal,
nothing in CI logs or other non-interactive output (``XTERRAMIND_PROGRESS=1`` forces it on, ``0`` off)."""

from __future__ import annotations

import os
import sys

import dask
from dask.callbacks import Callback


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


class _Ticks(Callback):
    """Advances the bar each time one of the watched tasks finishes (local schedulers)."""

    def __init__(self, bar, keys):
        super().__init__()
        self._bar, self._keys = bar, keys

    def _posttask(self, key, result, dsk, state, worker_id):
        if key in self._keys:
            self._bar.update(1)


def _client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def run(tasks: list, description: str, progress: bool | None = None) -> list:
    """Compute dask-delayed ``tasks`` on the active scheduler (a distributed client if one is
    running) and return their results in order."""
    with bar(len(tasks), description, progress) as ticker:
        client = _client()
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            for _ in as_completed(futures):
                ticker.update(1)
            return client.gather(futures)
        with _Ticks(ticker, {task.key for task in tasks}):
            return list(dask.compute(*tasks))
