"""Write fine-tuned-model parity goldens from TerraTorch itself, to test xterramind's native models against.

Run it in the terratorch environment (never a dependency of xterramind; see ``tools/parity/README.md``):

    ../venv-tt/bin/python tools/parity/make_task_goldens.py [CASE ...]

For each case of ``tools/parity/task_cases.py`` it builds the model with TerraTorch's own task class
(``terratorch.tasks.<Task>(model_args=..., model_factory="EncoderDecoderFactory")``, backbone not pre-trained), sets
every parameter and buffer to xterramind's seeded value by name (``seeded_tensor(name, shape, SEED)``, the name
without the task's ``model.`` prefix; tensors TerraTorch shares get the value of the first of their names; the fixed
sine-cosine ``pos_emb`` tables keep their computed values), runs ``task.model(inputs).output`` in eval mode on the
case's seeded, already standardized inputs, and writes ``tests/goldens/tasks/<case>/``:

- ``config.yaml``: the config as ``terratorch fit`` saves it (LightningCLI layout: ``model.class_path``,
  ``model.init_args.model_args``, ``data.init_args.means``/``stds``, ...), the task's init args being its signature's
  defaults with the case's arguments over them, null ones left out, as LightningCLI writes them;
- ``layout.json``: every key of the task's state dict (``model.`` prefix) with its shape, the aliases of shared
  tensors (alias -> the name whose seeded value they hold) and checksums of the fixed ``pos_emb`` tables;
- ``output.npz``: per run, the output summarized by ``task_cases.summarize``, checksums and shapes of the inputs,
  and for a TiM model the token grids TerraTorch generated (and the seed it drew).
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.parity.cases import checksum  # noqa: E402
from tools.parity.task_cases import CASES, TIM_SEED, TaskCase, aliases, reference_tim_seed, summarize  # noqa: E402
from xterramind.models.weights import seeded_tensor  # noqa: E402

OUT = ROOT / "tests" / "goldens" / "tasks"
TEMPLATES = {False: OUT / "fit_example" / "config.yaml", True: OUT / "fit_example_multimodal" / "config.yaml"}
SOURCE = "terratorch 1.2.11"


def _shim_torchvision() -> None:
    """PyPI's torchvision beside a CPU torch lacks two operator schemas that its import registers."""
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _shim_torchvision.library = library  # the schemas live as long as the library object


def _terratorch():
    _shim_torchvision()
    import terratorch.tasks

    # importing terratorch sets float32_matmul_precision to "medium" (oneDNN may trade fp32 accuracy for speed)
    torch.set_float32_matmul_precision("highest")
    return terratorch.tasks


# -- the model, seeded -------------------------------------------------------------------------------


@torch.no_grad()
def seed_task(task, seed: int) -> tuple[dict, dict, dict]:
    """Every tensor of ``task``'s state dict set to its seeded value; returns (layout, aliases, fixed tables)."""
    state = task.state_dict()
    shared = aliases(state)
    fixed = {}
    for key, tensor in state.items():
        if key.endswith("pos_emb"):
            fixed[key] = checksum(tensor)
            continue
        name = shared.get(key, key).removeprefix("model.")
        tensor.copy_(seeded_tensor(name, tensor.shape, seed))
    for key, canonical in shared.items():  # the copies really are shared: every alias holds the canonical value
        assert torch.equal(state[key], state[canonical]), key
    return {key: list(tensor.shape) for key, tensor in state.items()}, shared, fixed


def build_task(tasks, case: TaskCase):
    task_class = getattr(tasks, case.task)
    return task_class(model_args=copy.deepcopy(case.model_args), model_factory="EncoderDecoderFactory",
                      **copy.deepcopy(case.task_args))


# -- the config, as `terratorch fit` saves it -------------------------------------------------------------


def _plain(value) -> bool:
    try:
        yaml.safe_dump(value)
    except yaml.representer.RepresenterError:
        return False
    return True


def init_args(tasks, case: TaskCase) -> dict:
    """The task's init args as LightningCLI saves them: every parameter, defaults included, nulls left out."""
    signature = inspect.signature(getattr(tasks, case.task).__init__)
    given = {"model_args": copy.deepcopy(case.model_args), "model_factory": "EncoderDecoderFactory",
             **copy.deepcopy(case.task_args)}
    args = dict(given)
    for name, parameter in signature.parameters.items():
        if name in ("self", "model_args", "model_factory") or parameter.kind in (parameter.VAR_KEYWORD,
                                                                                 parameter.VAR_POSITIONAL):
            continue
        value = given.get(name, parameter.default)
        if value is parameter.empty or value is None or not _plain(value):
            continue
        args[name] = value
    return args


def config(tasks, case: TaskCase) -> dict:
    multimodal = len(case.modalities) > 1
    data = copy.deepcopy(yaml.safe_load(TEMPLATES[multimodal].read_text()))
    data["model"] = {"class_path": f"terratorch.tasks.{case.task}", "init_args": init_args(tasks, case)}
    module = data["data"]["init_args"]
    stats = {name: case.statistics(name) for name in case.modalities}
    regression = case.task == "PixelwiseRegressionTask"
    if multimodal:
        module["modalities"] = case.modalities
        module["means"] = {name: mean for name, (mean, _) in stats.items()}
        module["stds"] = {name: std for name, (_, std) in stats.items()}
        for key in ("train_data_root", "val_data_root", "test_data_root"):
            split = key.split("_")[0]
            module[key] = {name: f"/tmp/fitx/mm/{'val' if split == 'test' else split}/{name}" for name in case.modalities}
        module["image_grep"] = {name: f"*_{name}.tif" for name in case.modalities}
        module["rgb_modality"] = case.modalities[0]
        module["task"] = "regression" if regression else "segmentation"
    else:
        name = case.modalities[0]
        module["means"], module["stds"] = stats[name]
        module["dataset_bands"] = module["output_bands"] = case.bands(name)
        module["img_grep"] = f"*_{name}.tif"
        module["rgb_indices"] = [case.bands(name).index(b) for b in ("RED", "GREEN", "BLUE")] \
            if {"RED", "GREEN", "BLUE"} <= set(case.bands(name)) else [0, 0, 0]
    if regression:
        data["data"]["class_path"] = ("terratorch.datamodules.GenericMultiModalDataModule" if multimodal else
                                      "terratorch.datamodules.GenericNonGeoPixelwiseRegressionDataModule")
        module.pop("num_classes", None)
    elif "num_classes" in module:
        module["num_classes"] = case.model_args["num_classes"]
    data["trainer"]["default_root_dir"] = f"/tmp/fitx/{case.name}/"
    return data


# -- running ----------------------------------------------------------------------------------------------


def _record_generation(task, store: dict) -> None:
    """Keep the token grids TerraTorch's TiM generates (``sampler.generate``'s output) and the seed it draws."""
    sampler = task.model.encoder.sampler
    generate = sampler.generate

    def recording(mod_dict, schedule, **kwargs):
        out = generate(mod_dict, schedule, **kwargs)
        store["seed"] = kwargs.get("seed")
        store["tokens"] = {step["target_domain"]: out[step["target_domain"]]["tensor"].clone() for step in schedule}
        return out

    sampler.generate = recording


TIM_NAMES = {"tok_lulc@224": "LULC", "tok_ndvi@224": "NDVI", "tok_sen1grd@224": "S1GRD", "tok_sen1rtc@224": "S1RTC",
             "tok_dem@224": "DEM", "tok_sen2l2a@224": "S2L2A"}


@torch.no_grad()
def run_case(tasks, case: TaskCase) -> None:
    torch.manual_seed(0)
    task = build_task(tasks, case)
    layout, shared, fixed = seed_task(task, case.seed)
    task.eval()
    recorded: dict = {}
    if case.tim:
        _record_generation(task, recorded)
    arrays = {}
    for run in case.runs:
        inputs = case.inputs(run)
        random.seed(TIM_SEED)
        torch.manual_seed(0)
        out = task.model({name: tensor.clone() for name, tensor in inputs.items()}).output
        arrays |= {f"{run.name}.{key}": value for key, value in summarize(out).items()}
        for name, tensor in inputs.items():
            arrays[f"{run.name}.checksum.{name}"] = np.asarray(checksum(tensor))
            arrays[f"{run.name}.input_shape.{name}"] = np.asarray(tensor.shape, dtype=np.int64)
        if case.tim:
            grid = (run.height // 16, run.width // 16)
            for key, tokens in recorded["tokens"].items():
                arrays[f"{run.name}.tokens.{TIM_NAMES[key]}"] = tokens.reshape(run.batch, *grid).numpy()
            arrays[f"{run.name}.reference_seed"] = np.asarray(recorded["seed"], dtype=np.int64)
            if case.tim_seeds is None:
                assert recorded["seed"] == reference_tim_seed()
        print(f"  {case.name} {run.name}: output {tuple(out.shape)}, |mean| {out.abs().mean():.4f}")

    folder = OUT / case.name
    folder.mkdir(parents=True, exist_ok=True)
    saved = config(tasks, case)
    text = (f"# lightning.pytorch==2.6.6\n# {case.name}: an xterramind parity golden, written by "
            f"tools/parity/make_task_goldens.py with {SOURCE}\n") + yaml.safe_dump(saved, sort_keys=False)
    (folder / "config.yaml").write_text(text)
    # the saved config builds the same model in TerraTorch
    again = getattr(tasks, saved["model"]["class_path"].rsplit(".", 1)[-1])(**yaml.safe_load(text)["model"]["init_args"])
    assert {k: list(v.shape) for k, v in again.state_dict().items()} == layout, f"{case.name}: config.yaml differs"
    manifest = {"case": case.name, "source": SOURCE, "seed": case.seed, "compares": case.compares,
                "keys": layout, "aliases": shared, "fixed": fixed}
    (folder / "layout.json").write_text(json.dumps(manifest, indent=1) + "\n")
    np.savez_compressed(folder / "output.npz", **arrays)
    size = sum(path.stat().st_size for path in folder.iterdir())
    print(f"{folder.relative_to(ROOT)}: {len(layout)} keys, {len(shared)} aliases, {size / 1e3:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"cases to write (default: all): {list(CASES)}")
    args = parser.parse_args()
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; cases: {list(CASES)}")
    torch.set_num_threads(4)
    tasks = _terratorch()
    for name in args.cases or CASES:
        run_case(tasks, CASES[name])


if __name__ == "__main__":
    main()
