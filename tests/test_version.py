"""The version (``xterramind.version``): the installed distribution's, in one module that imports nothing of the
package, re-exported as ``xterramind.__version__``, shown by ``xterramind --version`` and stamped on results."""

import ast
import importlib
import importlib.metadata
from pathlib import Path

import pytest

import xterramind
from xterramind import cli, version


def test_the_version_is_the_installed_distributions_and_the_packages():
    assert version.__version__ == importlib.metadata.version("xterramind") == xterramind.__version__
    assert "__version__" in xterramind.__all__


def test_the_version_module_imports_nothing_of_the_package():
    """So that any module may stamp the version without importing the package (engine -> __init__ was a cycle)."""
    tree = ast.parse(Path(version.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert imported and not any(name.startswith("xterramind") or name == "" for name in imported), imported
    assert all(node.level == 0 for node in ast.walk(tree) if isinstance(node, ast.ImportFrom))


def test_a_source_tree_that_was_not_installed_says_so(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert importlib.reload(version).__version__ == "0.0.0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(version)
    assert version.__version__ == xterramind.__version__


def test_the_command_line_shows_it(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"xterramind {xterramind.__version__}\n"


def test_results_carry_it(cube, micro):
    assert cube.terramind.embed(micro).attrs["xterramind_version"] == version.__version__
