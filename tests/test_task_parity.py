"""xterramind's fine-tuned models against TerraTorch's: goldens written by tools/parity/make_task_goldens.py.

Each golden folder holds the config as ``terratorch fit`` saves it, the checkpoint layout of TerraTorch's task
(names under ``model.``, shapes, shared tensors) and TerraTorch's outputs on seeded standardized inputs, computed
with seeded weights (``seeded_tensor``: a pure function of seed, name and shape). Here the same config is read by
``read_config``, the model is built natively and given the same weights by name, and it runs on the same inputs.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import xterramind
from tests.tasks import save_checkpoint
from tools.parity.cases import checksum
from tools.parity.task_cases import CASES, aliases, summarize
from xterramind import runtime
from xterramind.models.finetuned import FineTuned
from xterramind.models.task_config import read_config
from xterramind.models.task_handle import IGNORED_PREFIXES
from xterramind.models.weights import empty_module, seeded_tensor

GOLDENS = Path(__file__).parent / "goldens" / "tasks"
FOLDERS = sorted(path for path in GOLDENS.iterdir() if path.is_dir() and not path.name.startswith("fit_example"))
TOLERANCE = 1e-4  # max abs difference, fp32
SUMMARIES = ("lattice", "row_mean", "col_mean")

def _ours(key: str) -> bool:
    """A key of TerraTorch's task that xterramind's model holds (without ``model.``): not an ignored one."""
    return not key.removeprefix("model.").startswith(IGNORED_PREFIXES)


class Golden:
    """One golden folder, and xterramind's model of its config with the weights TerraTorch's had, by name."""

    def __init__(self, folder: Path):
        self.folder, self.case = folder, CASES[folder.name]
        self.task = read_config(folder / "config.yaml")
        self.layout = json.loads((folder / "layout.json").read_text())
        self.outputs = dict(np.load(folder / "output.npz"))
        self.module = empty_module(lambda: FineTuned(self.task.spec))
        canonical = {alias.removeprefix("model."): key.removeprefix("model.")
                     for alias, key in self.layout["aliases"].items()}
        self.state = {}
        for key, tensor in self.module.state_dict().items():
            # the fixed sine-cosine tables keep the values xterramind computes (compared with TerraTorch's)
            self.state[key] = tensor.clone() if key.endswith("pos_emb") else seeded_tensor(
                canonical.get(key, key), tensor.shape, self.layout["seed"])

    def model(self) -> FineTuned:
        self.module.load_state_dict(self.state, strict=True)
        return self.module.eval()

    def inputs(self, run) -> dict[str, torch.Tensor]:
        inputs = self.case.inputs(run)
        for modality, tensor in inputs.items():
            assert list(tensor.shape) == self.outputs[f"{run.name}.input_shape.{modality}"].tolist()
            np.testing.assert_allclose(checksum(tensor), self.outputs[f"{run.name}.checksum.{modality}"], rtol=1e-9,
                                       err_msg=f"seeded input {modality} differs from the one the golden was made with")
        return inputs

    def compare(self, output: torch.Tensor, run, what: str) -> float:
        """The largest difference to TerraTorch's output over what the golden keeps; asserted within the tolerance."""
        summary = summarize(output)
        expected = self.outputs[f"{run.name}.shape"].tolist()
        assert list(summary["shape"]) == expected, f"{what} {run.name}: shape {list(summary['shape'])} != {expected}"
        worst = 0.0
        for key in SUMMARIES:
            error = float(np.abs(summary[key] - self.outputs[f"{run.name}.{key}"]).max())
            assert error <= TOLERANCE, f"{what} {run.name}: {key} max abs difference {error:.2e} > {TOLERANCE}"
            worst = max(worst, error)
        print(f"{what} {run.name}: max abs difference {worst:.2e}")
        return worst

    def compare_tokens(self, tokens: dict[str, torch.Tensor], run) -> None:
        """A TiM model's generated token grids equal TerraTorch's, token by token."""
        expected = {key.rsplit(".", 1)[-1] for key in self.outputs if key.startswith(f"{run.name}.tokens.")}
        assert {key.removeprefix("tok_") for key in tokens} == expected
        for key, grid in tokens.items():
            same = grid.numpy() == self.outputs[f"{run.name}.tokens.{key.removeprefix('tok_')}"]
            assert same.all(), f"{run.name}: {key} differs from TerraTorch's in {(~same).sum()} of {same.size} cells"


@pytest.fixture(scope="module", params=FOLDERS, ids=[folder.name for folder in FOLDERS])
def golden(request) -> Golden:
    """Built once per golden (pytest groups the tests by it), dropped after: the base model's weights are 400 MB."""
    return Golden(request.param)


def test_every_case_has_a_golden():
    assert [folder.name for folder in FOLDERS] == sorted(CASES)


def test_layout_matches_terratorch(golden):
    """Every state-dict name and shape of TerraTorch's task (less the ignored prefixes), the position tables, and no
    tensor tied that TerraTorch keeps apart."""
    state = golden.module.state_dict()
    ours = {key: list(tensor.shape) for key, tensor in state.items()}
    theirs = {key.removeprefix("model."): shape for key, shape in golden.layout["keys"].items() if _ours(key)}
    missing, unexpected = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    assert not (missing or unexpected), (f"missing {missing[:8]} ({len(missing)}), unexpected {unexpected[:8]} "
                                         f"({len(unexpected)})")
    wrong = {key: (ours[key], theirs[key]) for key in ours if ours[key] != theirs[key]}
    assert not wrong, f"shapes (xterramind, TerraTorch): {wrong}"

    def groups(shared: dict[str, str]) -> list[set]:
        found: dict[str, set] = {}
        for alias, key in shared.items():
            found.setdefault(key, {key}).add(alias)
        return list(found.values())

    # xterramind must tie nothing TerraTorch keeps apart (a checkpoint's values under those names would be lost);
    # where TerraTorch ties more, its checkpoint holds equal values under every name: loaded, the same model
    theirs_tied = groups({alias.removeprefix("model."): key.removeprefix("model.")
                          for alias, key in golden.layout["aliases"].items() if _ours(alias)})
    for group in groups(aliases(state)):
        assert any(group <= their for their in theirs_tied), f"tied in xterramind only: {sorted(group)}"
    for key, values in golden.layout["fixed"].items():  # the fixed position tables, computed on both sides
        if not _ours(key):
            continue
        np.testing.assert_allclose(checksum(state[key.removeprefix("model.")]), values, rtol=1e-5, atol=1e-6,
                                   err_msg=key)


@torch.no_grad()
def test_outputs_match_terratorch(golden):
    """The native model on TerraTorch's weights and inputs gives TerraTorch's outputs (and a TiM one its tokens)."""
    case, module = golden.case, golden.model()
    generated: list[dict] = []  # what a TiM model's think() gives, recorded during its forward
    if case.tim:
        think = module.think

        def recording(inputs, seeds):
            generated.append(think(inputs, seeds))
            return generated[-1]

        module.think = recording
    try:
        for run in case.runs:
            inputs, seeds = golden.inputs(run), (case.seeds(run) if case.tim else None)
            generated.clear()
            out = module(inputs, seeds)
            if case.tim:
                assert len(generated) == 1
                golden.compare_tokens(generated[0], run)
                if case.tim_seeds is None:  # xterramind given the seed TerraTorch drew
                    assert seeds == [int(golden.outputs[f"{run.name}.reference_seed"])]
            golden.compare(out, run, golden.folder.name)
    finally:
        module.__dict__.pop("think", None)


def test_load_task_predicts_as_terratorch(golden, tmp_path):
    """The public path: the golden's config.yaml and a Lightning checkpoint of the weights (under ``model.``, with the
    keys xterramind ignores there too), ``load_task``, and ``predict`` on data in physical units standardized by
    ``task.normalize`` with the config's statistics: TerraTorch's output on the first run."""
    folder, layout = golden.folder, golden.layout
    state = dict(golden.state)
    ignored = {key.removeprefix("model."): torch.zeros(()).expand(shape) for key, shape in layout["keys"].items()
               if not _ours(key)}  # present as in TerraTorch's checkpoint (tokenizers), never read: one value stored
    assert {f"model.{key}" for key in state | ignored} == set(layout["keys"])
    checkpoint = tmp_path / "best-epoch=00.ckpt"
    save_checkpoint(checkpoint, state | ignored, yaml.safe_load((folder / "config.yaml").read_text()))
    task = xterramind.load_task(folder / "config.yaml", checkpoint, device="cpu")
    try:
        _predict_as_terratorch(golden, task)
    finally:  # the process keeps loaded models for its workers; this one is used no more (the base one is 400 MB)
        runtime.forget(task.recipe.key)


def _predict_as_terratorch(golden: Golden, task) -> None:
    case = golden.case
    assert [spec.name for spec in task.inputs] == case.modalities
    run = case.runs[0]
    inputs, raw = golden.inputs(run), {}
    for spec in task.inputs:
        mean, std = case.statistics(spec.name)
        assert (spec.mean, spec.std) == (tuple(mean), tuple(std))
        scale = torch.tensor(std, dtype=torch.float64)[:, None, None]
        raw[spec.name] = (inputs[spec.name].double() * scale + torch.tensor(mean, dtype=torch.float64)[:, None, None]).float()
    standardized = {name: task.normalize(name, value) for name, value in raw.items()}
    out = task.predict(standardized, case.seeds(run) if case.tim else None)  # always (B, outputs, H, W)
    if len(golden.outputs[f"{run.name}.shape"]) == 3:  # TerraTorch squeezes a single output
        out = out[:, 0]
    golden.compare(out, run, f"{golden.folder.name} (load_task)")
