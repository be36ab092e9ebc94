"""Fine-tuned models as TerraTorch leaves them, made by the tests: a LightningCLI config and a Lightning checkpoint
(its ``state_dict`` under ``model.``, hyper-parameters as Lightning's ``AttributeDict``) with seeded weights."""

from __future__ import annotations

import contextlib
import copy
import sys
import types
from pathlib import Path

import torch
import yaml

from xterramind.models.finetuned import FineTuned
from xterramind.models.registry import resolve_modality
from xterramind.models.task_config import read_config
from xterramind.models.weights import empty_module, init_seeded_

PYRAMID = [{"name": "SelectIndices", "indices": [0, 1, 1, 1]}, {"name": "ReshapeTokensToImage", "remove_cls_token": False},
           {"name": "LearnedInterpolateToPyramidal"}]


def task_config(*, backbone: str = "terramind_micro", modalities=("S2L1C",), kind: str = "segmentation",
                classes: int = 3, necks=None, decoder: str = "UNetDecoder", decoder_args=None, head_args=None,
                extra_args=None, tiled=None, class_names=None) -> dict:
    """A config in the layout ``terratorch fit`` saves (LightningCLI), with the data module's statistics."""
    args = {"backbone": backbone, "backbone_pretrained": False, "backbone_modalities": list(modalities),
            "necks": PYRAMID if necks is None else necks, "decoder": decoder}
    args |= {f"decoder_{k}": v for k, v in (decoder_args if decoder_args is not None else
                                             {"channels": [32, 16, 8, 4]} if decoder == "UNetDecoder" else {}).items()}
    args |= {f"head_{k}": v for k, v in (head_args or {}).items()}
    args |= {"num_classes": classes} if kind == "segmentation" else {}
    args |= extra_args or {}
    task = "SemanticSegmentationTask" if kind == "segmentation" else "PixelwiseRegressionTask"
    stats = {name: resolve_modality(name) for name in modalities}
    means = {name: [round(m * 1.1, 3) for m in spec.mean] for name, spec in stats.items()}  # not the pre-training ones
    stds = {name: [round(s * 0.9, 3) for s in spec.std] for name, spec in stats.items()}
    one = len(modalities) == 1
    init_args = {"model_factory": "EncoderDecoderFactory", "model_args": args, "loss": "ce", "freeze_backbone": False}
    if tiled:
        init_args["tiled_inference_parameters"] = tiled
    if class_names:
        init_args["class_names"] = list(class_names)
    return copy.deepcopy({
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_steps": 1},
        "model": {"class_path": f"terratorch.tasks.{task}", "init_args": init_args},
        "data": {"class_path": "terratorch.datamodules.GenericMultiModalDataModule" if not one else
                 "terratorch.datamodules.GenericNonGeoSegmentationDataModule",
                 "init_args": {"batch_size": 2, "means": means[modalities[0]] if one else means,
                               "stds": stds[modalities[0]] if one else stds}},
    })


class AttributeDict(dict):
    """Stands for Lightning's ``AttributeDict``: pickled under Lightning's name, as a fit's checkpoint holds it."""


@contextlib.contextmanager
def _lightning_names():
    """Lightning's module path, for pickling ``AttributeDict`` under its name (the package is not installed)."""
    names = ["lightning", "lightning.fabric", "lightning.fabric.utilities", "lightning.fabric.utilities.data"]
    added = [name for name in names if name not in sys.modules]
    for name in added:
        sys.modules[name] = types.ModuleType(name)
    AttributeDict.__module__ = "lightning.fabric.utilities.data"
    sys.modules["lightning.fabric.utilities.data"].AttributeDict = AttributeDict
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]
        AttributeDict.__module__ = __name__


def seeded_model(config: dict, seed: int = 0) -> FineTuned:
    """The fine-tuned model of ``config`` with seeded weights (as ``init_seeded_``; position tables computed)."""
    spec = read_config(config).spec
    module = empty_module(lambda: FineTuned(spec))
    init_seeded_(module, seed)
    return module.eval()


def write_task(folder: Path, config: dict, seed: int = 0, name: str = "task") -> tuple[Path, Path]:
    """``config.yaml`` and a Lightning ``.ckpt`` of its model with seeded weights, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path, checkpoint = folder / f"{name}.yaml", folder / f"{name}.ckpt"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    save_checkpoint(checkpoint, seeded_model(config, seed).state_dict(), config)
    return config_path, checkpoint


def save_checkpoint(path: Path, state: dict, config: dict, **extra) -> None:
    """A checkpoint laid out as Lightning saves one in ``terratorch fit``."""
    with _lightning_names():
        hyper = AttributeDict(config["model"]["init_args"])
        torch.save({"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.6",
                    "state_dict": {f"model.{k}": v for k, v in state.items()}, "loops": {}, "callbacks": {},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}], "lr_schedulers": [],
                    "hparams_name": "kwargs", "hyper_parameters": hyper} | extra, path)
