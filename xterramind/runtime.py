"""Process-side choices: which device, which precision, and one shared model per recipe per process.

A Dask worker that unpickles a model handle gets the process's shared copy, so each worker
process loads each model once, however many tasks use it. A worker process a nanny started is also
given back what the nanny's environment takes from torch (``use_worker_settings``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections import Counter

import dask.system
import torch

from .errors import OptionError

PRECISIONS = {"fp32": None, "float32": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}

_models: dict = {}
_models_lock = threading.Lock()
loads: Counter = Counter()  # model name -> number of modules built in this process (tests read it)
worker_settings: dict = {}  # what use_worker_settings gave this Dask worker process, and how often (tests read it)
_worker_lock = threading.Lock()

# glibc's mallopt parameter and the ceiling its adaptive mmap threshold reaches on 64-bit systems without
# MALLOC_TRIM_THRESHOLD_ (measured, benchmarks/workers.py: this is what costs; the trim threshold itself does not,
# so distributed's stays, returning freed memory early as its memory monitor wants)
MALLOPT = {"M_MMAP_THRESHOLD": -3}
MALLOC_THRESHOLDS = {"M_MMAP_THRESHOLD": 32 * 2**20}


def device_named(device: str | torch.device) -> torch.device | None:
    """The device ``device`` names (``None`` for ``"auto"``), whether or not this machine has it: a run file names
    each worker's device, which the driver may lack.

    Raises:
        OptionError: a name torch does not know.

    Example:
        >>> device_named("cuda:1")
        device(type='cuda', index=1)
    """
    if str(device) == "auto":
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise OptionError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None


def choose_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU if there is one, else the CPU.

    Example:
        >>> choose_device("cpu")
        device(type='cpu')
    """
    chosen = device_named(device)
    if chosen is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} asked for, but this machine has no CUDA GPU; use device='cpu' or 'auto'")
    return chosen


def precision_named(precision: str) -> str:
    """``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``: the short name of ``precision`` (``"bfloat16"`` is ``"bf16"``).

    Raises:
        OptionError: a precision that is none of these.

    Example:
        >>> precision_named("bfloat16")
        'bf16'
    """
    if precision != "auto" and not (isinstance(precision, str) and precision in PRECISIONS):
        raise OptionError(f"unknown precision {precision!r}; use 'auto', 'fp32', 'bf16' or 'fp16'")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(precision, precision)


def choose_precision(precision: str, device: torch.device) -> str:
    """``"auto"``: bf16 on GPUs that support it (about twice as fast, cosine similarity > 0.9999), else fp32.

    Example:
        >>> choose_precision("auto", torch.device("cpu"))
        'fp32'
    """
    canonical = precision_named(precision)
    if canonical == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if bf16 else "fp32"
    if canonical == "fp16" and device.type != "cuda":
        raise OptionError("fp16 runs on CUDA GPUs only; on the CPU use precision='bf16' or 'fp32'")
    return canonical


def autocast(device: torch.device, precision: str):
    """A context in which the model computes in ``precision`` (weights stay fp32)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def torch_threads_setting() -> int | None:
    """``XTERRAMIND_TORCH_THREADS`` as a number of torch threads, ``None`` when it is unset or empty.

    Raises:
        OptionError: a value that is not a positive whole number.

    Example:
        >>> torch_threads_setting()   # unset
    """
    wanted = os.environ.get("XTERRAMIND_TORCH_THREADS", "").strip()
    if not wanted:
        return None
    if not wanted.isdigit() or int(wanted) < 1:
        raise OptionError(f"XTERRAMIND_TORCH_THREADS={wanted!r}: give a positive whole number of torch threads, "
                          "e.g. XTERRAMIND_TORCH_THREADS=4, or unset it")
    return int(wanted)


def use_worker_settings() -> None:
    """In a Dask worker process that a nanny started, undo what the nanny's environment does to the model; elsewhere
    (this process as a driver, the threads of an in-process cluster) only ``XTERRAMIND_TORCH_THREADS``, where set.

    The nanny starts each worker with ``OMP_NUM_THREADS=1`` (torch on one core) and ``MALLOC_TRIM_THRESHOLD_``,
    which turns off glibc's adaptive thresholds: every buffer over 128 kiB is then a fresh mmap, zeroed page by page
    (the model's CPU time x 1.5). The first call in such a process (from a task: the handle's model or device lane)
    gives torch the worker's cores, ``XTERRAMIND_TORCH_THREADS`` or else its thread count (a deployment's share of
    the host's cores: one thread per core by default, so workers sharing a host do not oversubscribe it), and sets
    glibc's mmap threshold where adaptation would take it (``MALLOC_THRESHOLDS``). Each later call makes the
    calling thread use that many torch threads too (torch counts them per thread).

    Example:
        >>> use_worker_settings()        # in the driver: nothing
        >>> worker_settings
        {}
    """
    threads = worker_settings.get("torch threads") or _set_up_worker() or torch_threads_setting()
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _set_up_worker() -> int | None:
    """The worker's torch threads after its one-time set-up, or None outside a nanny's worker process."""
    worker = _nanny_worker()
    if worker is None:
        return None
    with _worker_lock:
        if "torch threads" not in worker_settings:
            threads = torch_threads_setting() or min(worker.state.nthreads, dask.system.CPU_COUNT)
            worker_settings.update({"torch threads": threads, "malloc": _malloc_thresholds(),
                                    "set up": worker_settings.get("set up", 0) + 1})
    return worker_settings["torch threads"]


def _nanny_worker():
    """The Dask worker running this task, if a nanny started its process (a process of its own, never the driver)."""
    distributed = sys.modules.get("distributed")  # a process that never imported it is no worker: not imported here
    if distributed is None:
        return None
    try:
        worker = distributed.get_worker()
    except ValueError:  # not in a task
        return None
    return worker if worker.nanny else None


def _malloc_thresholds() -> dict:
    """Set glibc's ``MALLOC_THRESHOLDS`` where ``MALLOC_TRIM_THRESHOLD_`` froze its adaptive ones (and no
    ``MALLOC_MMAP_THRESHOLD_`` chose one): what was set."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return {}
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # another C library (musl, macOS): the variable meant nothing
        return {}
    return {name: value for name, value in MALLOC_THRESHOLDS.items() if libc.mallopt(MALLOPT[name], value) == 1}


def shared(key, build):
    """The process-wide object for ``key``, built once by ``build()`` even when threads race."""
    with _models_lock:
        if key not in _models:
            _models[key] = build()
        return _models[key]


def forget(key) -> None:
    """Let the process-wide object for ``key`` go (its memory with it); the next ``shared`` builds it again."""
    with _models_lock:
        _models.pop(key, None)
