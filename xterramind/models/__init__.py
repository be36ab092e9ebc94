"""TerraMind v1 in plain PyTorch, state-dict compatible with the official checkpoints."""

from .handle import Recipe, TerraMindModel, load_model
from .registry import MODELS, ModalitySpec, ModelConfig, get_config, list_models, resolve_modality
from .task_handle import TaskModel, TaskRecipe, load_task
from .terramind import Context, TerraMind

__all__ = [
    "MODELS",
    "Context",
    "ModalitySpec",
    "ModelConfig",
    "Recipe",
    "TaskModel",
    "TaskRecipe",
    "TerraMind",
    "TerraMindModel",
    "get_config",
    "list_models",
    "load_model",
    "load_task",
    "resolve_modality",
]
