"""Progress bars: on in terminals and Jupyter, off in CI logs, forced either way by XTERRAMIND_PROGRESS."""

import io
import sys

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
    assert progress.wanted(False) is False  # asked for: always as asked
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert progress.wanted(None) is True


def test_environment_variable_forces_it(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for value, wanted in (("1", True), ("yes", True), ("0", False), ("false", False), ("no", False), ("", False)):
        monkeypatch.setenv("XTERRAMIND_PROGRESS", value)
        assert progress.wanted(None) is wanted, value


def test_the_bar_counts_regions_under_its_description(monkeypatch):
    monkeypatch.delenv("XTERRAMIND_PROGRESS", raising=False)
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    with progress.bar(3, "writing out.zarr", True) as bar:
        assert (bar.total, bar.desc, bar.unit, bar.disable) == (3, "writing out.zarr", "region", False)
        for _ in range(3):
            bar.update(1)
    shown = captured.getvalue()
    assert "writing out.zarr" in shown and "3/3" in shown and "region" in shown


def test_the_bar_shows_nothing_where_it_is_not_wanted(monkeypatch):
    monkeypatch.setenv("XTERRAMIND_PROGRESS", "0")
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    for asked in (None, False):
        with progress.bar(2, "writing", asked) as bar:
            bar.update(2)
        assert bar.disable is True
    assert captured.getvalue() == ""
