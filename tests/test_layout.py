"""The package's architecture rules, read from its source with ``ast`` (nothing is imported):

(a) every module outside ``models/`` has its test module, ``tests/test_<dotted name without the package>.py``
    (``retrieval/cells.py``: ``test_retrieval_cells.py``; ``data/__init__.py``: ``test_data.py``); a package
    ``__init__.py`` that only re-exports needs none;
(b) no module imports another module's underscore-private names (``from .x import _name``, ``x._name``);
(c) no import cycle among the package's modules, counting imports made inside functions too.

Each checker takes a package folder, so the tests below also point it at a small broken package in ``tmp_path``
to show that it fails and says what broke.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "xterramind"
TESTS = ROOT / "tests"
UNTESTED = ("models",)  # subpackages whose parity tests cover them as a whole


def modules(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name, not ``.__init__``)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((package.name, *parts))] = path
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _only_reexports(tree: ast.Module) -> bool:
    """A body of a docstring, imports and ``__all__``: nothing of its own to test."""
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        listing = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
        if not (docstring or listing or isinstance(node, ast.Import | ast.ImportFrom)):
            return False
    return True


def missing_test_modules(package: Path, tests: Path) -> list[str]:
    """``module: no tests/test_x.py`` for each module of ``package`` (outside ``UNTESTED``) without its test module."""
    missing = []
    for name, path in modules(package).items():
        parts = name.split(".")[1:]
        if parts and parts[0] in UNTESTED:
            continue
        if path.name == "__init__.py" and _only_reexports(ast.parse(path.read_text())):
            continue
        where = path.relative_to(package.parent)
        if not parts:  # the package's own __init__.py: nothing of its own should need testing there
            missing.append(f"{name} ({where}): holds more than re-exports; move that into a module with its test module")
        elif not (tests / f"test_{'_'.join(parts)}.py").is_file():
            missing.append(f"{name} ({where}): no {tests.name}/test_{'_'.join(parts)}.py")
    return missing


def _source(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The dotted name of the module ``from ... import`` reads from, in the module ``name`` at ``path``."""
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _imports(name: str, path: Path, known: dict[str, Path]):
    """``(line, imported module, names taken from it, names bound)`` for each import of a module of the package
    in the module ``name`` at ``path``, wherever it sits (top level, functions, ``if`` blocks)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:  # ``import pkg.stac`` binds ``pkg``, ``import pkg.stac as s`` binds ``s``
                    bound = alias.asname or alias.name.split(".")[0]
                    yield node.lineno, alias.name, [], {bound: alias.name if alias.asname else bound}
        elif isinstance(node, ast.ImportFrom):
            source = _source(name, path, node)
            plain = []
            for alias in node.names:
                if f"{source}.{alias.name}" in known:  # ``from . import engine``: the submodule
                    yield node.lineno, f"{source}.{alias.name}", [], {alias.asname or alias.name: f"{source}.{alias.name}"}
                else:
                    plain.append(alias.name)
            if plain and source in known:
                yield node.lineno, source, plain, {}


def private_imports(package: Path) -> list[str]:
    """``module:line: what`` for each use of another module's private name: ``from .x import _name`` or
    ``x._name`` (also ``x.y._name``) where ``x`` is bound to a module of the package by an import."""
    known = modules(package)
    found = []
    for name, path in known.items():
        bound = {}  # local name -> the package module an import binds it to
        for line, source, names, binds in _imports(name, path, known):
            found += [f"{name}:{line}: from {source} import {n}" for n in names if _private(n) and source != name]
            bound |= binds
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.insert(0, value.attr)
                value = value.value
            if not (isinstance(value, ast.Name) and value.id in bound):
                continue
            owner, rest = bound[value.id], chain
            while rest and f"{owner}.{rest[0]}" in known:  # ``pkg.stac._x``: the private of ``pkg.stac``
                owner, rest = f"{owner}.{rest[0]}", rest[1:]
            if owner != name and any(map(_private, rest)):
                found.append(f"{name}:{node.lineno}: {'.'.join([value.id, *chain])} (of {owner})")
    return sorted(set(found), key=lambda said: (said.split(":")[0], int(said.split(":")[1])))


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """For each module of ``package``, the package modules it imports and the line of the first such import."""
    known = modules(package)
    graph: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, path in known.items():
        for line, source, _, _ in _imports(name, path, known):
            if source != name:
                graph[name].setdefault(source, line)
    return graph


def import_cycles(package: Path) -> list[str]:
    """One cycle for each group of modules that import each other in a loop: ``a (line 3) -> b (line 9) -> a`` says
    that ``a`` imports ``b`` on its line 3 and ``b`` imports ``a`` on its line 9; other members of the group follow."""
    graph = import_graph(package)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, group) for group in sorted(groups, key=min)]


def _one_cycle(graph: dict[str, dict[str, int]], group: set[str]) -> str:
    """The shortest loop through the group's first module, said with the line of each import."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node]):
            if other == start:
                loop = [*paths[node], start]
                said = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(loop)) + f" -> {start}"
                others = sorted(group - set(loop))
                return said + (f" (also in the loop: {', '.join(others)})" if others else "")
            if other in group and other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(f"no loop through {start}")  # a strongly connected group always has one


def _said(problems: list[str]) -> str:
    return "\n  " + "\n  ".join(problems)


# -- the rules on the package -------------------------------------------------------------------------------------------


def test_every_module_outside_models_has_its_test_module():
    missing = missing_test_modules(PACKAGE, TESTS)
    print(_said(missing) if missing else "every module has its test module")
    assert not missing, "modules without their test module:" + _said(missing)


def test_no_module_imports_another_modules_private_names():
    found = private_imports(PACKAGE)
    print(_said(found) if found else "no private imports")
    assert not found, "imports of another module's private names:" + _said(found)


def test_no_import_cycle_in_the_package():
    cycles = import_cycles(PACKAGE)
    print(_said(cycles) if cycles else "no import cycles")
    assert not cycles, "import cycles:" + _said(cycles)


# -- the checkers fail on a broken package ------------------------------------------------------------------------------


def _tree(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "pkg"


def test_a_module_without_its_test_module_is_named(tmp_path):
    package = _tree(tmp_path, {
        "pkg/__init__.py": '"""Re-exports only."""\nfrom .grid import Grid\n\n__all__ = ["Grid"]\n',
        "pkg/grid.py": "class Grid: ...\n", "pkg/tiles.py": "X = 1\n",
        "pkg/sub/__init__.py": "def run(): ...\n", "pkg/sub/cells.py": "Y = 2\n", "pkg/sub/other.py": "Z = 3\n",
        "pkg/models/layers.py": "W = 4\n",  # models/ are exempt
        "tests/test_grid.py": "", "tests/test_sub_cells.py": "", "tests/test_other.py": "",  # not test_sub_other
    })
    assert missing_test_modules(package, tmp_path / "tests") == [
        "pkg.sub (pkg/sub/__init__.py): no tests/test_sub.py",
        "pkg.sub.other (pkg/sub/other.py): no tests/test_sub_other.py",
        "pkg.tiles (pkg/tiles.py): no tests/test_tiles.py",
    ]
    (tmp_path / "pkg" / "__init__.py").write_text("from .grid import Grid\nVERSION = '1'\n")  # not only re-exports now
    assert missing_test_modules(package, tmp_path / "tests")[0] == (
        "pkg (pkg/__init__.py): holds more than re-exports; move that into a module with its test module")


def test_imports_of_another_modules_private_names_are_named(tmp_path):
    package = _tree(tmp_path, {
        "pkg/__init__.py": "", "pkg/stac.py": "def _alias(): ...\ndef _own(): ...\nX = _own()\n",
        "pkg/sources.py": "from . import stac\nfrom .stac import _alias, X\n\n\ndef f():\n    return stac._alias()\n",
        "pkg/sub/__init__.py": "", "pkg/sub/cells.py": "def g():\n    from ..stac import _alias as a\n    return a\n",
        "pkg/plot.py": "import pkg.stac\nfrom .stac import __doc__\nY = pkg.stac._alias\nZ = pkg.stac.__name__\n",
        "pkg/clean.py": "import numpy as np\nfrom . import stac\nX = np._NoValue, stac.X, 'a'._x\n",
    })
    assert private_imports(package) == [
        "pkg.plot:3: pkg.stac._alias (of pkg.stac)",
        "pkg.sources:2: from pkg.stac import _alias",
        "pkg.sources:6: stac._alias (of pkg.stac)",
        "pkg.sub.cells:2: from pkg.stac import _alias",
    ]


def test_an_import_cycle_is_found_and_said_with_its_lines_even_inside_a_function(tmp_path):
    package = _tree(tmp_path, {
        "pkg/__init__.py": "from . import accessor\n__version__ = '1'\n", "pkg/accessor.py": "from .engine import f\n",
        "pkg/engine.py": "import numpy\n\n\ndef f():\n    from . import __version__\n    return __version__\n",
        "pkg/sub/__init__.py": "", "pkg/sub/cells.py": "from .search import META\n",
        "pkg/sub/search.py": "META = 1\n\n\ndef open():\n    from pkg.sub import cells\n",
        "pkg/leaf.py": "from .sub import cells\nfrom . import engine\n",  # imports into loops, in none
        "pkg/plot.py": "import pkg.accessor\nfrom pkg import __version__\n", "pkg/verbs.py": "from .plot import x\n",
    })
    (tmp_path / "pkg" / "__init__.py").write_text("from . import accessor, verbs\n__version__ = '1'\n")
    assert import_cycles(package) == [
        "pkg (line 1) -> pkg.accessor (line 1) -> pkg.engine (line 5) -> pkg (also in the loop: pkg.plot, pkg.verbs)",
        "pkg.sub.cells (line 1) -> pkg.sub.search (line 5) -> pkg.sub.cells",
    ]
    (tmp_path / "pkg" / "engine.py").write_text("VERSION = '1'\n")
    (tmp_path / "pkg" / "sub" / "search.py").write_text("META = 1\n")
    assert import_cycles(package) == ["pkg (line 1) -> pkg.verbs (line 1) -> pkg.plot (line 2) -> pkg"]  # the other loop
    (tmp_path / "pkg" / "plot.py").write_text("import pkg.accessor\n")
    assert import_cycles(package) == []
