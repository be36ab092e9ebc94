"""Where weights come from: seeded random values, local files, or the Hugging Face hub.

Files are read without executing anything: ``.pt`` through ``torch.load(weights_only=True)``,
``.safetensors`` through safetensors. Every state dict is checked against the model's layout
before it is loaded, and a mismatch is reported in plain words.
"""

from __future__ import annotations

import collections
import hashlib
import math
import os
import pickle
import re
import threading
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, MissingDependencyError, WeightsUnavailableError
from .coords import CoordsVocabulary
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
    if len(shape) == 0:  # counters, e.g. a batch norm's num_batches_tracked
        return torch.zeros(shape)
    if name == "running_var":  # a batch norm's variances: positive, near one
        return torch.randn(shape, generator=generator).abs_().mul_(0.2).add_(0.9)
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


def read_state_dict(path: str | os.PathLike, *, lightning: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely, without running any code it may carry.

    The format is read from the file's first bytes, not its suffix: safetensors, or a ``torch.save``
    file (zip or the legacy format) read with ``weights_only=True``. Anything else, and any file that
    fails to decode, is a ``CheckpointError`` that says so; nothing in the file is ever executed.

    Example:
        >>> state = read_state_dict("TerraMind_v1_tiny.pt")
        >>> state["encoder_norm.weight"].shape
        torch.Size([192])
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsUnavailableError(f"{path} is a folder; pass the checkpoint file (.pt or .safetensors) inside it")
    if not path.is_file():
        raise WeightsUnavailableError(f"checkpoint file not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: an 8-byte header length, then the JSON header; torch's zip format starts like every zip file
    if head[8:] == b"{":
        state = _read_safetensors(path)
    else:
        state = _read_torch(path, mmap=head.startswith(b"PK\x03\x04"), training=lightning)
    if lightning and isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a Lightning checkpoint: the rest (optimizer, loops, hyper-parameters) unused
    elif isinstance(state, Mapping) and set(state) & {"model", "state_dict"} and len(state) <= 3:
        state = state.get("state_dict", state.get("model"))  # tolerate the common training wrappers
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state)


UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def read_task_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a fine-tuning checkpoint: a Lightning ``.ckpt`` (its ``state_dict``; the hyper-parameters
    beside it are read as plain data, never as the classes they name) or a plain state dict. Nothing is executed.

    Example:
        >>> state = read_task_state_dict("epoch=99.ckpt")
        >>> next(iter(state))
        'model.encoder.encoder_embeddings.untok_sen2l1c@224.proj.weight'
    """
    return read_state_dict(path, lightning=True)


class _Inert(dict):
    """What a training container of plain values is read as (Lightning's ``AttributeDict``, an argparse
    ``Namespace``): a dict of what it held, whatever class the file names; that class is never imported."""

    def __setstate__(self, state):
        if isinstance(state, Mapping):
            self.update(state)


# The globals a fine-tuning checkpoint may name, by (module, name): torch's tensor rebuilders and plain containers.
# The containers are read as ``_Inert`` dicts; any other global makes the file refused, nothing in it executed.
_REBUILDERS = {("torch._utils", name) for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
                                                    "_rebuild_parameter_with_state")}
_CONTAINERS = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
               ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice}
_INERT = {("lightning.fabric.utilities.data", "AttributeDict"), ("lightning_fabric.utilities.data", "AttributeDict"),
          ("pytorch_lightning.utilities.parsing", "AttributeDict"),
          ("lightning.pytorch.utilities.parsing", "AttributeDict"), ("argparse", "Namespace"),
          ("jsonargparse._namespace", "Namespace"), ("jsonargparse", "Namespace")}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds tensors and plain data only (torch's loader gives it the storages)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _REBUILDERS:
            return getattr(torch._utils, name)
        if (module, name) in _CONTAINERS:
            return _CONTAINERS[module, name]
        if (module, name) in _INERT:
            return _Inert
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise CheckpointError(f"{module}.{name}")  # said with the file's path by _read_torch


class _RestrictedPickle:
    """A ``pickle_module`` for ``torch.load`` whose unpickler constructs nothing but tensors and plain data."""

    Unpickler = _RestrictedUnpickler
    load = staticmethod(lambda file, **kwargs: _RestrictedUnpickler(file, **kwargs).load())
    __name__ = "xterramind restricted pickle"


def _read_torch(path: Path, mmap: bool, training: bool = False):
    """``torch.load`` with ``weights_only=True`` (mapped when the file is zip: only that format can be), or for a
    ``training`` checkpoint with the restricted unpickler, which also reads its plain containers; failures told in our
    words: torch's own message suggests ``weights_only=False``, which would run the file's code."""
    restricted = {"weights_only": False, "pickle_module": _RestrictedPickle} if training else {"weights_only": True}
    try:
        if path.suffix == ".safetensors":  # torch.load would pass it to safetensors by its name
            with open(path, "rb") as handle:
                return torch.load(handle, map_location="cpu", **restricted)
        return torch.load(path, map_location="cpu", mmap=mmap, **restricted)
    except CheckpointError as refused:  # the restricted unpickler met a global it does not build
        raise _runs_code(path, str(refused)) from None
    except Exception as error:  # torch raises anything from UnpicklingError to KeyError on a file it cannot read
        unsafe = UNSAFE_GLOBAL.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
        if unsafe:
            raise _runs_code(path, unsafe[1]) from None
        raise _corrupt(path, error) from None


def _runs_code(path: Path, named: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a plain checkpoint: it asks to run code or build Python objects ({named}), so xterramind "
        "will not load it (it never runs code from a checkpoint). Use the official file or the checkpoint your "
        "training saved; or, if you trust where it came from, re-save just its tensors as a plain state dict: "
        "torch.save(model.state_dict(), path) or safetensors.torch.save_file(...)."
    )


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
        raise _corrupt(path, error) from None


def _corrupt(path: Path, error: Exception) -> CheckpointError:
    lines = str(error).strip().splitlines()
    detail = type(error).__name__ + (f": {lines[0][:160]}" if lines and "weights_only" not in str(error) else "")
    return CheckpointError(
        f"{path} is truncated or corrupt, or not a checkpoint at all ({detail}); it will not be loaded. Delete it "
        "and download it again, or pass a state dict saved with torch.save(model.state_dict(), path) or safetensors."
    )


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
    state: Mapping[str, torch.Tensor], layout: Mapping[str, torch.Size], required: set[str], expected: str, source: str,
    describe=None,
) -> None:
    """Raise ``CheckpointError`` unless ``state`` fits ``layout`` (the full module's names and shapes).

    Keys in ``layout`` but not in ``required`` (the decoder, when only the encoder is built) may be
    absent; unknown keys and wrong shapes are always errors. ``expected`` names what should be there;
    ``describe(state)`` says what the file looks like instead (default: which TerraMind checkpoint).
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
    guess = (describe or describe_checkpoint)(state)
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


HUB_PROBE_SECONDS = 5.0


def locate_official(config, download: bool = True) -> Path:
    """Path of the official file of a model, a tokenizer or the coordinates vocabulary: ``$XTERRAMIND_WEIGHTS_DIR``,
    then the Hugging Face cache, then (if ``download``) the hub, which gets one try of a few seconds
    (``hub_unreachable``) before huggingface_hub's own retries, so that offline is told at once.

    Example:
        >>> locate_official(get_config("terramind_v1_tiny"))
        PosixPath('.../models--ibm-esa-geospatial--TerraMind-1.0-tiny/snapshots/.../TerraMind_v1_tiny.pt')
    """
    if config.hub_repo is None:
        raise WeightsUnavailableError(
            f"{config.name} has no official checkpoint (it is a toy configuration for tests and demos).\n"
            "Load it with weights='random', or pass a state dict of its layout: weights='/path/to/file.pt'."
        )
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if folder and (Path(folder) / config.filename).is_file():
        return Path(folder) / config.filename
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsUnavailableError(
            _unavailable(config, "huggingface_hub is not installed (pip install 'xterramind[hub]')")
        ) from None
    cached = huggingface_hub.try_to_load_from_cache(config.hub_repo, config.filename)
    if isinstance(cached, str):
        return Path(cached)
    if not download:
        raise WeightsUnavailableError(_unavailable(config, None))
    reason = hub_unreachable()
    if reason is None:
        try:
            return Path(huggingface_hub.hf_hub_download(config.hub_repo, config.filename))
        except Exception as error:  # hub errors, the network lost meanwhile: all mean "not available here"
            reason = _first_line(error)
    raise WeightsUnavailableError(_unavailable(config, reason))


def hub_unreachable(seconds: float = HUB_PROBE_SECONDS) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or ``None`` when it answers.

    One plain request that takes at most ``seconds`` whatever the network does (it runs in a thread, so
    even a hanging name lookup is cut short): offline, ``hf_hub_download`` would retry for ~25 s per file.
    It honours ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and huggingface_hub's proxies and client settings.

    Example:
        >>> hub_unreachable()   # on a machine without internet
        'https://huggingface.co did not answer (ConnectError: [Errno -2] Name or service not known)'
    """
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            get_session().head(endpoint, timeout=seconds)
            outcome.append(None)
        except Exception as error:  # any failure of one plain request to the hub means: not reachable now
            outcome.append(f"{endpoint} did not answer ({_first_line(error)})")

    thread = threading.Thread(target=probe, name="xterramind-hub-probe", daemon=True)
    thread.start()
    thread.join(seconds + 1.0)
    return outcome[0] if outcome else f"{endpoint} did not answer within {seconds:g} s"


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return type(error).__name__ + (f": {lines[0]}" if lines else "")


def _unavailable(config, reason: str | None) -> str:
    """Why official files cannot be had, and the fixes. The first line stands alone (what is missing and why:
    notebooks and the command line may show only that); the fixes follow, in Python's words."""
    file = f"'/path/to/{config.filename}'"
    if isinstance(config, CoordsVocabulary):
        what, passing = "coordinates vocabulary is", f"load_model(..., tokenizers={{'coords': {file}}})"
        instead = "or go without the location: leave out coords=True (it is data: random weights need it too)"
    else:
        if isinstance(config, ModelConfig):
            what, passing = f"weights of {config.name} are", f"load_model({config.name!r}, weights={file})"
        else:
            what = f"weights of the {config.name} tokenizer are"
            passing = f"load_model(..., tokenizers={{{config.name!r}: {file}}})"
        instead = "or run on untrained, seeded weights: weights='random'"
    source = f"{config.filename} from the Hugging Face repo {config.hub_repo}" + ("" if reason else ", not downloaded")
    why = f" and could not be downloaded: {reason}" if reason else ""
    return (
        f"the official {what} not on this machine ({source}){why}.\nFix it one way:\n"
        f"  - on a machine with internet: `hf download {config.hub_repo} {config.filename}`, then copy the "
        "Hugging Face cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) to this machine;\n"
        f"  - put {config.filename} in a folder and set ${WEIGHTS_DIR_ENV} to that folder;\n"
        f"  - pass the file itself: {passing};\n"
        f"  - {instead}."
    )
