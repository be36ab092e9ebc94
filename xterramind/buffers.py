"""Host memory reused from one region to the next: a region's window, its batches, its stitched sums.

Every region allocates the same few large arrays again (a batch of 8 tiles: 19 MB; a region's blended LULC
sums: 147 MB), and fresh memory costs the kernel a page fault for each page first touched. On this project's
2-core machine that was a quarter of the region loop's CPU time (``benchmarks.plumbing``: the model stage of
embed 1.8 -> 1.35 core-ms per tile, of generate 5.3 -> 4.1, with batches and sums reused). Inside ``reused()``
(a write, an area run) ``empty`` hands out memory that comes back here when the last array or tensor viewing it
is freed, and the next region of the same shapes takes it warm. Outside, and past ``POOL_BYTES`` of free
memory, it is plain ``numpy.empty``: nothing is held once the work is done.

Why it cannot hand out memory still in use: each loan is a fresh array made by ``numpy.frombuffer`` over the
pooled block, so every NumPy view of it keeps that array (not the block) as its base, and ``torch.from_numpy``
keeps the array too; the block comes back only when that array is collected, after its last view.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

POOL_BYTES = 1 << 30  # free memory kept at most, oldest given up first: a few regions' worth of buffers

_lock = threading.RLock()  # RLock: a loan's finalizer may run while this thread holds it
_users = 0
_free: OrderedDict[int, list[np.ndarray]] = OrderedDict()  # by size in bytes: the free blocks (uint8)
_free_bytes = 0
_counts = {"loans": 0, "fresh": 0}  # since the process started: arrays handed out from the pool, and of those, new memory


@contextmanager
def reused():
    """Reuse memory between the regions run inside (nestable, from any thread); the pool is emptied when the
    last one ends."""
    start()
    try:
        yield
    finally:
        stop()


def start() -> None:
    """Begin reusing memory in this process (``reused`` for code that cannot use a ``with``: a Dask worker)."""
    global _users
    with _lock:
        _users += 1


def stop() -> None:
    """End one ``start``; the last one gives every free block back to the system."""
    global _users, _free_bytes
    with _lock:
        _users = max(0, _users - 1)
        if not _users:
            _free.clear()
            _free_bytes = 0


def free_bytes() -> int:
    """Bytes of free memory the pool holds now."""
    return _free_bytes


def counts() -> dict[str, int]:
    """Since the process started: ``loans``, the arrays handed out inside ``reused()``, and ``fresh``, those of
    them that took new memory (the rest took memory given back)."""
    with _lock:
        return dict(_counts)


def empty(shape, dtype) -> np.ndarray:
    """An uninitialized C-contiguous array, from the pool inside ``reused()``."""
    return _loan(shape, dtype, zeroed=False)


def zeros(shape, dtype) -> np.ndarray:
    """An array of zeros, from the pool inside ``reused()`` (fresh memory comes zeroed from the system)."""
    return _loan(shape, dtype, zeroed=True)


def _loan(shape, dtype, *, zeroed: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    shape = tuple(int(side) for side in shape)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not _users or size == 0:
        return (np.zeros if zeroed else np.empty)(shape, dtype)
    block = _taken(size)
    if block is None:
        block = (np.zeros if zeroed else np.empty)(size, np.uint8)
    elif zeroed:
        block.fill(0)
    loan = np.frombuffer(memoryview(block), dtype=dtype, count=size // dtype.itemsize)
    weakref.finalize(loan, _give_back, block).atexit = False
    return loan.reshape(shape)


def _taken(size: int) -> np.ndarray | None:
    """A free block of ``size`` bytes, or None (the loan takes new memory); counted either way."""
    global _free_bytes
    with _lock:
        blocks = _free.get(size)
        block = blocks.pop() if blocks else None
        if block is not None:
            _free_bytes -= size
            if not blocks:
                del _free[size]
        _counts["loans"] += 1
        _counts["fresh"] += block is None
        return block


def _give_back(block: np.ndarray) -> None:
    global _free_bytes
    with _lock:
        if not _users or block.nbytes > POOL_BYTES:
            return
        _free.setdefault(block.nbytes, []).append(block)
        _free.move_to_end(block.nbytes)
        _free_bytes += block.nbytes
        while _free_bytes > POOL_BYTES:  # the sizes least recently given back go first
            size, blocks = next(iter(_free.items()))
            blocks.pop(0)
            _free_bytes -= size
            if not blocks:
                del _free[size]
