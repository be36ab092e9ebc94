"""Progress bars: on in terminals and Jupyter, off in CI logs, forced either way by XTERRAMIND_PROGRESS."""

import io
import sys

import dask
import pytest

from xterramind import progress
from xterramind.errors import Interrupted


def test_quiet_when_output_is_not_interactive(monkeypatch):
    monkeypatch.delenv("XTERRAMIND_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert progress.wanted(None) is False
    assert progress.wanted(True) is True


def test_on_in_a_terminal_and_in_jupyter(monkeypatch):
    monkeypatch.delenv("XTERRAMIND_PROGRESS", raising=False)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert progress.wanted(None) is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progress.wanted(None) is True


def test_environment_variable_forces_it(monkeypatch):
    monkeypatch.setenv("XTERRAMIND_PROGRESS", "1")
    assert progress.wanted(None) is True
    monkeypatch.setenv("XTERRAMIND_PROGRESS", "0")
    assert progress.wanted(None) is False


def test_run_counts_every_task_and_keeps_order(monkeypatch):
    monkeypatch.setenv("XTERRAMIND_PROGRESS", "1")
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    jobs = [progress.Job((dask.delayed(lambda i: i * i)(i),)) for i in range(7)]
    assert progress.run(jobs, "squares") == [i * i for i in range(7)]
    assert "squares" in captured.getvalue() and "7/7" in captured.getvalue()


def test_a_job_computes_its_parts_together_and_hands_them_on():
    calls = []
    shared = dask.delayed(lambda: calls.append(1) or {"a": 1, "b": 2}, pure=True)()
    parts = (dask.delayed(lambda d: d["a"])(shared), dask.delayed(lambda d: d["b"])(shared))
    assert progress.run([progress.Job(parts, lambda a, b: a + b)], "sum", progress=False) == [3]
    assert calls == [1]  # what the parts share ran once


def test_only_a_few_jobs_are_in_flight_and_an_interrupt_says_how_far_it_got(monkeypatch):
    import threading

    started, gate = [], threading.Event()

    def job(i):
        started.append(i)
        if i == 0:
            raise KeyboardInterrupt  # as if Ctrl-C reached the loop while job 1 still runs (it waits for the gate)
        gate.wait(5)
        return i

    monkeypatch.setattr(progress, "local_threads", lambda: 2)
    jobs = [progress.Job((dask.delayed(job)(i),)) for i in range(10)]
    threading.Timer(0.5, gate.set).start()
    with pytest.raises(Interrupted, match=r"interrupted after \d of 10 regions; run the same call again"):
        progress.run(jobs, "writing", progress=False)
    assert len(started) <= 4  # never all ten
