"""The device stage: one thread per device and process runs every region's batches on the model's device.

A region task hands its batches to the model's lane and goes on cutting and standardizing the next ones,
and stitching those that came back, while the device computes; with several regions in flight (the
executor's threads, or a worker's), the lane always has a batch waiting, so the device never waits for
the host. One thread per device also keeps two regions from splitting a GPU, or the CPU's cores, between
two forward passes at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from . import runtime

AHEAD = 2  # batches a region keeps on the lane beyond the one being stitched, at least
AHEAD_TILES = 128  # and tiles: a CPU's batches of 8 queue a region's worth, enough to cover another region's read


def lane(model) -> ThreadPoolExecutor:
    """The process's thread for ``model``'s device (one per device, shared by every region task and model). Asked
    for from a task's own thread, where a Dask worker can be told apart (``runtime.use_worker_settings``): the
    lane's thread is no task, and the model calls it makes then find the worker's settings made."""
    runtime.use_worker_settings()
    device = str(model.device)
    return runtime.shared(("lane", device),
                          lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"xterramind-{device}"))


def run_ahead(model, kernel: Callable, batches: Iterable[tuple]) -> Iterator[tuple]:
    """Yield ``(batch, kernel(inputs, batch))`` for each ``(batch, inputs)``, in order, the kernels run on
    the lane of ``model``'s device up to ``AHEAD`` batches or ``AHEAD_TILES`` tiles ahead of the caller (which
    prepares the next batches meanwhile).

    Example:
        >>> [(b, out) for b, out in run_ahead(model, lambda inputs, batch: inputs * 2, [(0, 1), (1, 5)])]
        [(0, 2), (1, 10)]
    """
    device, pending, queued = lane(model), deque(), 0
    for batch, inputs in batches:
        pending.append((batch, device.submit(kernel, inputs, batch)))
        queued += len(batch)
        while len(pending) > AHEAD and queued > AHEAD_TILES:
            batch, done = pending.popleft()
            queued -= len(batch)
            yield batch, done.result()
    while pending:
        batch, done = pending.popleft()
        yield batch, done.result()
