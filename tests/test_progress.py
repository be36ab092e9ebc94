"""Progress bars: on in terminals and Jupyter, off in CI logs, forced either way by XTERRAMIND_PROGRESS."""

import io
import sys

import dask

from xterramind import progress


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
    tasks = [dask.delayed(lambda i: i * i)(i) for i in range(7)]
    assert progress.run(tasks, "squares") == [i * i for i in range(7)]
    assert "squares" in captured.getvalue() and "7/7" in captured.getvalue()
