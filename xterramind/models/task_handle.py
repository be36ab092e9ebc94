"""The handle of a fine-tuned model (``xterramind.load_task``): its recipe (the TerraTorch config, the checkpoint,
device and precision, or a module recipe of your own) and the process's loaded copy.

Like ``TerraMindModel`` it pickles as its recipe alone, so a Dask worker loads the weights itself, once; it offers
what the region loop uses (``config``, ``device``, ``normalize``), with the statistics and band order the model
was fine-tuned with.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import runtime
from ..errors import ConfigError, InputError, WeightsUnavailableError
from .finetuned import FineTuned
from .registry import ModalitySpec, ModelConfig
from .task_config import TaskConfig, read_config
from .weights import check_state_dict, empty_module, file_sha256, read_task_state_dict

__all__ = ["TaskModel", "TaskRecipe", "load_task"]

IGNORED_PREFIXES = ("encoder.tokenizer.", "aux_heads.")  # token inputs' tokenizers, training-only auxiliary heads


@dataclass(frozen=True)
class TaskRecipe:
    """Everything needed to rebuild a fine-tuned model in another process."""

    config: str  # the config's YAML text
    checkpoint: str  # the checkpoint file, resolved
    device: str = "auto"
    precision: str = "auto"
    module: bytes = b""  # a module recipe of your own, pickled: (factory, keyword arguments)

    @property
    def key(self) -> tuple:
        """What identifies the loaded model in a process (hashable, whatever the module recipe holds)."""
        return ("task", hashlib.sha256(self.config.encode()).hexdigest(), self.checkpoint, self.device,
                self.precision, hashlib.sha256(self.module).hexdigest())


class TaskModel:
    """A fine-tuned TerraMind model ready to run: what its config says, its weights, device and precision.

    Get one with ``xterramind.load_task``; give it to ``cube.terramind.predict``.

    Example:
        >>> task = xterramind.load_task("config.yaml", "best.ckpt", device="cpu")
        >>> task.kind, task.outputs, [spec.name for spec in task.inputs]
        ('segmentation', 2, ['S2L1C', 'S1GRD'])
    """

    def __init__(self, recipe: TaskRecipe):
        self.recipe = recipe
        self.task: TaskConfig = read_config(recipe.config)
        self.device = runtime.choose_device(recipe.device)
        self.precision = runtime.choose_precision(recipe.precision, self.device)
        self._module: nn.Module | None = None
        self._lock = threading.Lock()

    # -- identity -------------------------------------------------------------------------------

    @property
    def config(self) -> ModelConfig:
        """The backbone's configuration (patch and tile size, ground pixel): what the tiling is laid with."""
        return self.task.spec.config

    @property
    def kind(self) -> str:
        """``"segmentation"`` or ``"regression"``."""
        return self.task.spec.kind

    @property
    def outputs(self) -> int:
        """Classes (segmentation) or values per pixel (regression)."""
        return self.task.spec.outputs

    @property
    def inputs(self) -> tuple[ModalitySpec, ...]:
        """The inputs as the model takes them: bands in order, with the statistics of its training data."""
        return self.task.inputs

    @property
    def name(self) -> str:
        """What the model is, for messages and provenance: ``"terramind_v1_base fine-tuned (segmentation)"``."""
        return f"{self.task.spec.backbone}{'_tim' if self.task.spec.tim else ''} fine-tuned ({self.kind})"

    is_random = False  # a fine-tuned model always comes from its checkpoint

    @property
    def weights_id(self) -> str:
        """The sha256 of the checkpoint file: what results record as their weights."""
        return file_sha256(self.recipe.checkpoint)

    def __repr__(self) -> str:
        return (f"TaskModel({self.name!r}, checkpoint={self.recipe.checkpoint}, device={self.device}, "
                f"precision={self.precision})")

    def __reduce__(self):
        return _shared_task, (self.recipe,)

    def __dask_tokenize__(self):
        return ("TaskModel", self.recipe.key)

    # -- the torch module -----------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        """The loaded ``torch.nn.Module``: xterramind's native model of the config, or your own."""
        runtime.use_worker_settings()
        with self._lock:
            if self._module is None:
                self._module = self._build()
            return self._module

    def _build(self) -> nn.Module:
        state = _without_model_prefix(read_task_state_dict(self.recipe.checkpoint))
        if self.recipe.module:
            factory, arguments = pickle.loads(self.recipe.module)
            module = factory(**arguments)
            layout = module.state_dict() if isinstance(module, nn.Module) else {}
            state = {k: v for k, v in state.items() if k in layout or not k.startswith(IGNORED_PREFIXES)}
            _load_own(module, state, self.recipe.checkpoint)
        else:
            module = empty_module(lambda: FineTuned(self.task.spec))
            layout = {key: value.shape for key, value in module.state_dict().items()}
            state = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
            check_state_dict(state, layout, set(layout), _describe(self.task), self.recipe.checkpoint,
                             describe=_looks_like)
            module.load_state_dict(state, strict=True)
        runtime.loads[self.name] += 1
        return module.eval().requires_grad_(False).to(self.device)

    # -- running --------------------------------------------------------------------------------

    def predict(self, inputs: Mapping[str, torch.Tensor], seeds=None) -> torch.Tensor:
        """Standardized ``(B, C, H, W)`` inputs by modality -> ``(B, outputs, H, W)`` float32 scores (segmentation:
        the model's logits) or values, on the model's device. A TiM model draws each tile's grids from ``seeds``.

        Example:
            >>> x = {spec.name: task.normalize(spec.name, raw[spec.name]) for spec in task.inputs}
            >>> task.predict(x).shape
            torch.Size([1, 2, 224, 224])
        """
        module = self.module
        tensors = {name: torch.as_tensor(value).to(self.device) for name, value in inputs.items()}
        with torch.inference_mode(), runtime.autocast(self.device, self.precision):
            out = module(tensors, seeds) if self.task.spec.tim else module(tensors)
        out = getattr(out, "output", out)  # a module of your own may give TerraTorch's ModelOutput
        if not isinstance(out, torch.Tensor):
            raise InputError(f"the model gave {type(out).__name__}, not a tensor (B, outputs, H, W)")
        return (out[:, None] if out.ndim == 3 else out).float()

    def normalize(self, name: str, x, *, inplace: bool = False):
        """Standardize ``(..., C, H, W)`` data in physical units with the statistics the model was fine-tuned with
        (``inplace``: into ``x`` itself, floats only). Works on tensors and numpy arrays alike.

        Example:
            >>> x = task.normalize("S2L1C", torch.full((1, 13, 224, 224), 1500.0))
        """
        spec = next((spec for spec in self.inputs if spec.name == name), None)
        if spec is None:
            raise InputError(f"the model takes no {name} input; it takes {[s.name for s in self.inputs]}")
        if x.ndim < 3 or x.shape[-3] != len(spec.mean):
            raise InputError(f"{name}: expected (..., {len(spec.mean)}, H, W) data with bands {list(spec.bands)}, "
                             f"got shape {tuple(x.shape)}")
        if isinstance(x, torch.Tensor):
            mean = torch.tensor(spec.mean, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
            std = torch.tensor(spec.std, dtype=mean.dtype, device=x.device)
        else:
            import numpy as np

            dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
            mean, std = np.asarray(spec.mean, dtype=dtype), np.asarray(spec.std, dtype=dtype)
        mean, std = mean[:, None, None], std[:, None, None]
        if inplace:
            x -= mean
            x /= std
            return x
        return (x - mean) / std


def _describe(task: TaskConfig) -> str:
    spec = task.spec
    return (f"{spec.backbone}{' TiM ' + str(list(spec.tim)) if spec.tim else ''} {spec.kind} with "
            f"{[s.name for s in task.inputs]} inputs, necks {[n.get('name') for n in spec.necks]}, {spec.decoder}, "
            f"{spec.outputs} outputs (the config)")


# A decoder's telltale state-dict names (TerraTorch's), for saying what a checkpoint that does not fit holds.
DECODER_KEYS = {"UNetDecoder": "decoder.decoder.blocks.", "UperNetDecoder": "decoder.psp_modules.",
                "FCNDecoder": "decoder.convs.", "LinearDecoder": "decoder.conv."}


def _looks_like(state: Mapping[str, torch.Tensor]) -> str:
    """What a fine-tuning checkpoint holds, as far as its names say: backbone width, decoder, outputs."""
    token = next((v for k, v in state.items() if k.startswith("encoder.encoder_embeddings.") and k.endswith("proj.weight")),
                 None)
    decoder = next((name for name, prefix in DECODER_KEYS.items() if any(k.startswith(prefix) for k in state)), None)
    head = state.get("head.head.2.weight")  # a segmentation head's last convolution
    if token is None and decoder is None:
        return "no fine-tuned TerraMind model (no encoder.encoder_embeddings.*, no known decoder)"
    parts = [f"a {token.shape[0]}-wide backbone" if token is not None else "", f"decoder {decoder}" if decoder else "",
             f"{head.shape[0]} outputs" if head is not None else ""]
    return "a fine-tuned model: " + ", ".join(part for part in parts if part)


def _without_model_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Lightning task's state dict holds its model under ``model.``; a plain one may not."""
    if state and all(key.startswith("model.") for key in state):
        return {key.removeprefix("model."): value for key, value in state.items()}
    return state


def _load_own(module: nn.Module, state: dict, source: str) -> None:
    if not isinstance(module, nn.Module):
        raise ConfigError(f"the module factory gave {type(module).__name__}, not a torch.nn.Module")
    layout = {key: value.shape for key, value in module.state_dict().items()}
    check_state_dict(state, layout, set(layout), "the module your factory builds", source)
    module.load_state_dict(state, strict=True)


def _shared_task(recipe: TaskRecipe) -> TaskModel:
    return runtime.shared(recipe.key, lambda: TaskModel(recipe))


def load_task(
    config: str | os.PathLike | Mapping,
    checkpoint: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    module: tuple[Callable[..., nn.Module], Mapping] | None = None,
) -> TaskModel:
    """Load a TerraMind model fine-tuned with TerraTorch, without TerraTorch.

    Args:
        config: the fine-tuning config (`terratorch fit -c config.yaml`, or the ``config.yaml`` it saved beside
            its checkpoints), as a path, YAML text or mapping: the task, backbone, necks, decoder and head, the
            data module's ``means``/``stds`` and band order.
        checkpoint: the Lightning ``.ckpt`` (its ``state_dict``, under ``model.``) or a plain state dict. Read
            without running any code it may carry.
        device: ``"auto"`` (a CUDA GPU if present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"auto"`` (bf16 on GPUs that support it, else fp32), ``"fp32"``, ``"bf16"``, ``"fp16"``.
        module: your own model, for a head TerraTorch does not know: ``(factory, keyword arguments)``, both picklable
            (a module-level function); ``factory(**arguments)`` builds the ``nn.Module`` that takes the standardized
            inputs by modality and gives ``(B, outputs, H, W)``. Each worker rebuilds it once and loads the
            checkpoint into it; the config still says the task, inputs and statistics.

    Raises:
        ConfigError: a config xterramind does not support (it names what is supported).
        CheckpointError: a checkpoint of another configuration (key by key), or one that asks to run code.

    Example:
        >>> task = xterramind.load_task("config.yaml", "epoch=99.ckpt")
        >>> flood = cube.terramind.predict(task)
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise WeightsUnavailableError(f"checkpoint must be a file path, got {type(checkpoint).__name__}")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"checkpoint file not found: {path}")
    task = read_config(config)
    recipe_module = b""
    if module is not None:
        if not (isinstance(module, tuple) and len(module) == 2 and callable(module[0]) and isinstance(module[1], Mapping)):
            raise ConfigError("module must be (factory, keyword arguments), e.g. (make_model, {'classes': 4})")
        try:
            recipe_module = pickle.dumps((module[0], dict(module[1])))
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise ConfigError(f"module must pickle (workers rebuild it): define the factory at module level; {error}") from None
    recipe = TaskRecipe(task.text, str(path.resolve()), str(device), precision, recipe_module)
    model = _shared_task(recipe)
    _ = model.module  # load now: a checkpoint that does not fit fails here, not in a worker (and is built again next time)
    return model
