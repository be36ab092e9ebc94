"""Every offline notebook runs top to bottom (random weights, in a scratch folder); every notebook is
committed without outputs. Notebooks named ``*_online`` need the internet and are not run here: each
has an offline twin that is."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
OFFLINE = [notebook for notebook in NOTEBOOKS if not notebook.stem.endswith("_online")]
PICTURES = {"quickstart": ["lulc.png", "false_colour.png", "embeddings.png"]}  # what a notebook must write


def _code(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


@pytest.mark.parametrize("notebook", OFFLINE, ids=[n.stem for n in OFFLINE])
def test_notebook_runs(notebook, tmp_path):
    env = dict(os.environ, XTERRAMIND_WEIGHTS="random", XTERRAMIND_PROGRESS="0", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", _code(notebook)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for picture in PICTURES.get(notebook.stem, []):
        assert (tmp_path / picture).stat().st_size > 20_000, f"{notebook.stem} did not write {picture}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_outputs_are_stripped(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in cells if cell["cell_type"] == "code")


def test_every_online_notebook_has_an_offline_twin():
    online = [n for n in NOTEBOOKS if n not in OFFLINE]
    assert OFFLINE and all(any(n.stem.split("_")[0] in o.stem for o in OFFLINE) for n in online)
