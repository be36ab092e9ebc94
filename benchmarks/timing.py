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


def machine_mark() -> tuple[float | None, float, float]:
    """Now, for ``foreign_seconds``: the machine's busy CPU seconds, this process's, and the wall clock."""
    return _machine_busy_seconds(), _own_seconds(), time.perf_counter()


def foreign_seconds(mark: tuple[float | None, float, float]) -> float | None:
    """CPU seconds the rest of the machine used since ``mark`` (None where /proc/stat cannot be read)."""
    busy, own, _ = mark
    now = _machine_busy_seconds()
    return None if busy is None or now is None else (now - busy) - (_own_seconds() - own)


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
        mark = machine_mark()
        call()
        wall = time.perf_counter() - mark[2]
        every.append(wall)
        foreign = foreign_seconds(mark)
        if foreign is not None and foreign < 0.1 * wall:
            clean.append(wall)
    kept = clean or every
    return Timing(statistics.median(kept), len(clean), len(every))
