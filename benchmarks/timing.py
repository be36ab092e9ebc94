"""Timing on a shared, noisy machine: keep only repetitions during which nothing else ran.

A repetition counts as clean when the rest of the machine used less than a tenth of one core
while it ran (from /proc/stat minus this process's own CPU time). If no repetition is clean,
all are kept and the result is marked noisy.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / TICKS


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Timing:
    seconds: float  # median of the kept repetitions
    kept: int
    total: int

    @property
    def noisy(self) -> bool:
        return self.kept == 0


def measure(call: Callable[[], object], repetitions: int, warmup: int = 2) -> Timing:
    """Median wall time of ``call`` over the clean repetitions."""
    for _ in range(warmup):
        call()
    clean, every = [], []
    for _ in range(repetitions):
        busy, own, start = _machine_busy_seconds(), _own_seconds(), time.perf_counter()
        call()
        wall = time.perf_counter() - start
        every.append(wall)
        if busy is not None:
            foreign = (_machine_busy_seconds() - busy) - (_own_seconds() - own)
            if foreign < 0.1 * wall:
                clean.append(wall)
    kept = clean or every
    return Timing(statistics.median(kept), len(clean), len(every))
