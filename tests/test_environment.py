"""environment.yml (conda-forge) stays in step with pyproject.toml: every dependency, core or extra, is
there under its conda name with the same version bound."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # where conda-forge's name differs from PyPI's


def _conda_dependencies() -> dict[str, str]:
    names = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.\-]+)\s*([<>=!~][^#\s]*)?\s*(#.*)?$", line)
        if match:
            names[match[1].lower()] = match[2] or ""
    return names


def _pip_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in listed if not r.startswith("xterramind")]


def test_every_dependency_is_in_the_conda_environment_with_the_same_bound():
    conda = _conda_dependencies()
    assert "python" in conda and "pip" in conda
    for requirement in _pip_requirements():
        name = CONDA_NAMES.get(requirement.name.lower(), requirement.name.lower())
        assert name in conda, f"{requirement.name} (pyproject.toml) is missing from environment.yml"
        assert conda[name] == str(requirement.specifier), f"{name}: {conda[name]!r} here, {requirement} in pyproject"
        for extra in requirement.extras - {"array"}:  # dask[array] is plain dask on conda-forge
            assert f"{name}-{extra}" in conda, f"{requirement} needs {name}-{extra} in environment.yml"


def test_the_python_bound_matches():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _conda_dependencies()["python"] == project["requires-python"]
