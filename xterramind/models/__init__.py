"""TerraMind v1 in plain PyTorch, state-dict compatible with the official checkpoints."""

from .handle import Recipe, TerraMindModel, load_model
from .registry import MODELS, ModalitySpec, ModelConfig, get_config, list_models, resolve_modality
from .terramind import Context, TerraMind

__all__ = [
    "MODELS",
    "Context",
    "ModalitySpec",
    "ModelConfig",
    "Recipe",
    "TerraMind",
    "TerraMindModel",
    "get_config",
    "list_models",
    "load_model",
    "resolve_modality",
]
