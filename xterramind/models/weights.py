"""Where weights come from: seeded random values, local files, or the Hugging Face hub.

Files are read without executing anything: ``.pt`` through ``torch.load(weights_only=True)``,
``.safetensors`` through safetensors. Every state dict is checked against the model's layout
before it is loaded, and a mismatch is reported in plain words.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, MissingDependencyError, WeightsUnavailableError
from .registry import MODELS, ModelConfig

WEIGHTS_DIR_ENV = "XTERRAMIND_WEIGHTS_DIR"
RESIDUAL_OUTPUT = re.compile(r"attn\.proj\.weight$|mlp\.fc2\.weight$")

# -- seeded random weights --------------------------------------------------------------------------


def _canonical(key: str) -> str:
    """Tied tensors draw their values under one name, so every copy of them is equal."""
    key = re.sub(r"^decoder_embeddings\.([^.]+)\.mod_emb$", r"encoder_embeddings.\1.mod_emb", key)
    return key.replace(".to_logits.weight", ".token_emb.weight")


def seeded_tensor(key: str, shape: torch.Size, seed: int) -> torch.Tensor:
    """A reproducible random value for one state-dict entry, drawn from its own generator.

    Each tensor depends only on (seed, name, shape), so a model built with or without its decoder,
    in any process, on any machine, gets the same weights. Scales follow the usual initialisation
    (Xavier for matrices, 0.02 for embeddings) but norms and biases are non-trivial too, so that
    tests comparing implementations exercise every parameter.
    """
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{_canonical(key)}".encode()))
    name = key.rsplit(".", 1)[-1]
    if len(shape) == 1 and name == "weight":  # norm scales
        return torch.randn(shape, generator=generator).mul_(0.1).add_(1.0)
    if len(shape) == 1 or name in ("mod_emb", "mask_token") or key.endswith("token_emb.weight"):
        return torch.randn(shape, generator=generator).mul_(0.02)
    fan_out, fan_in = shape[0], math.prod(shape[1:])
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    if RESIDUAL_OUTPUT.search(key):
        bound *= 0.25  # damp what each block adds to the residual stream, so activations stay O(1)
    return torch.rand(shape, generator=generator).mul_(2.0 * bound).sub_(bound)


def empty_module(build) -> nn.Module:
    """``build()`` with allocated but unset weights (fast: nothing is initialised twice), its fixed
    position tables computed and its tied weights tied again; to be filled from a file or seeds."""
    with torch.device("meta"):
        module = build()
    module.to_empty(device="cpu")
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    for part in module.modules():
        if hasattr(part, "reset_pos_emb"):
            part.reset_pos_emb()
    return module


@torch.no_grad()
def init_seeded_(module: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter and buffer of ``module`` with ``seeded_tensor`` values.

    Fixed sine-cosine position tables (``*pos_emb``) keep their computed values.
    """
    for key, tensor in module.state_dict(keep_vars=True).items():
        if not key.endswith("pos_emb"):
            tensor.copy_(seeded_tensor(key, tensor.shape, seed))
    return module


# -- reading files ----------------------------------------------------------------------------------


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely, without running any code it may carry."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"checkpoint file not found: {path}")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    if isinstance(state, Mapping) and set(state) & {"model", "state_dict"} and len(state) <= 3:
        state = state.get("state_dict", state.get("model"))  # tolerate the common training wrappers
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


def _read_torch(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise CheckpointError(
                f"{path} is not a plain tensor checkpoint: it asks to run code or build arbitrary Python objects, "
                "which xterramind refuses (it loads with weights_only=True). Use the official file, or re-save "
                "the weights from a trusted source with torch.save(model.state_dict(), path) or safetensors."
            ) from None
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); delete it and download it again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        if isinstance(error, RuntimeError) and "mmap" in str(error):
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy, non-zip format
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); delete it and download it again") from None


def _read_safetensors(path: Path):
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise MissingDependencyError(
            f"reading {path.name} needs safetensors: pip install 'xterramind[hub]'"
        ) from None
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types, none exported stably
        raise CheckpointError(f"{path} is truncated or corrupt ({error}); delete it and download it again") from None


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256; a Hugging Face cache blob is named by it already, so that is used as is."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


# -- checking ---------------------------------------------------------------------------------------


def check_state_dict(
    state: Mapping[str, torch.Tensor], layout: Mapping[str, torch.Size], required: set[str], expected: str, source: str
) -> None:
    """Raise ``CheckpointError`` unless ``state`` fits ``layout`` (the full module's names and shapes).

    Keys in ``layout`` but not in ``required`` (the decoder, when only the encoder is built) may be
    absent; unknown keys and wrong shapes are always errors. ``expected`` names what should be there.
    """
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - set(layout))
    mismatched = sorted(
        f"{k}: file {list(state[k].shape)}, model {list(layout[k])}"
        for k in set(state) & set(layout)
        if tuple(state[k].shape) != tuple(layout[k])
    )
    if not (missing or unexpected or mismatched):
        return
    guess = describe_checkpoint(state)
    lines = [f"{source} does not fit {expected}." + (f" It looks like {guess}." if guess and guess != expected else "")]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
        if items:
            shown = "\n    ".join(items[:8]) + (f"\n    ... and {len(items) - 8} more" if len(items) > 8 else "")
            lines.append(f"  {len(items)} {title}:\n    {shown}")
    raise CheckpointError("\n".join(lines))


TOKENIZERS_BY_CHANNELS = {12: "the S2L2A tokenizer", 2: "an S1GRD or S1RTC tokenizer", 1: "a DEM or NDVI tokenizer",
                          10: "the LULC tokenizer"}


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> str:
    """What a state dict seems to hold, from its keys and shapes: a TerraMind variant or tokenizer."""
    if "quant_proj.weight" in state:
        channels = state.get("encoder.proj.weight", torch.empty(0, 0)).shape[1]
        return f"a TerraMind tokenizer checkpoint ({TOKENIZERS_BY_CHANNELS.get(channels, f'{channels} channels')})"
    norm = state.get("encoder_norm.weight")
    if norm is None:
        return "no TerraMind v1 checkpoint (it has no encoder_norm.weight)"
    depth = len({k.split(".")[1] for k in state if k.startswith("encoder.")})
    for config in MODELS.values():
        if config.official and (config.dim, config.encoder_depth) == (norm.shape[0], depth):
            return f"a {config.name} checkpoint: load it with load_model({config.name!r}, weights=...)"
    return ""


# -- the hub ----------------------------------------------------------------------------------------


def locate_official(config, download: bool = True) -> Path:
    """Path of the official checkpoint of a model or tokenizer configuration: ``$XTERRAMIND_WEIGHTS_DIR``,
    then the Hugging Face cache, then (if ``download``) the hub."""
    if config.hub_repo is None:
        raise WeightsUnavailableError(
            f"{config.name} has no official checkpoint; use weights='random' or a path to a state dict"
        )
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if folder and (Path(folder) / config.filename).is_file():
        return Path(folder) / config.filename
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsUnavailableError(_unavailable(config, "huggingface_hub is not installed (pip install 'xterramind[hub]')")) from None
    cached = huggingface_hub.try_to_load_from_cache(config.hub_repo, config.filename)
    if isinstance(cached, str):
        return Path(cached)
    if not download:
        raise WeightsUnavailableError(_unavailable(config, "not in the local cache; download not attempted"))
    try:
        return Path(huggingface_hub.hf_hub_download(config.hub_repo, config.filename))
    except Exception as error:  # offline mode, no network, hub errors: all mean "not available here"
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise WeightsUnavailableError(_unavailable(config, reason)) from None


def _unavailable(config, reason: str) -> str:
    if isinstance(config, ModelConfig):
        what, passing = config.name, f"load_model({config.name!r}, weights='/path/to/{config.filename}')"
    else:
        what, passing = f"the {config.name} tokenizer", f"load_model(..., tokenizers={{{config.name!r}: '/path/to/{config.filename}'}})"
    return (
        f"the official weights of {what} ({config.filename} from the Hugging Face repo "
        f"{config.hub_repo}) are not on this machine and could not be fetched ({reason}). Fix it one way:\n"
        f"  - on a machine with internet: `hf download {config.hub_repo} {config.filename}`, then copy the "
        "Hugging Face cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) to this machine;\n"
        f"  - put {config.filename} in a folder and set ${WEIGHTS_DIR_ENV} to that folder;\n"
        f"  - pass the file itself: {passing};\n"
        "  - or run on untrained, seeded weights: weights='random'."
    )
