"""The model handle users hold: a recipe (name + weights source) and the process's loaded copy.

A handle pickles as its recipe alone, never its tensors, so Dask graphs stay small and each worker
process loads the weights itself, once.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import runtime
from ..errors import InputError, UnknownModalityError, WeightsUnavailableError
from .coords import CoordsTokenizer, CoordsVocabulary
from .generation import decode_targets, sample_targets
from .registry import ModelConfig, TokenizerConfig, get_config, resolve_modality, token_spec, tokenizer_config
from .sampling import Sampling
from .terramind import TerraMind
from .tokenizers import Tokenizer
from .weights import check_state_dict, file_sha256, init_seeded_, locate_official, read_state_dict

__all__ = ["Recipe", "TerraMindModel", "load_model"]


@dataclass(frozen=True)
class Recipe:
    """Everything needed to rebuild a model in another process."""

    name: str
    weights: str  # "auto", "random" or a file path
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    tokenizers: tuple[tuple[str, str], ...] = ()  # tokenizer name -> file, overriding the weights policy


@functools.cache
def full_layout(config: ModelConfig | TokenizerConfig) -> dict[str, torch.Size]:
    """Names and shapes of the complete official checkpoint of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        module = TerraMind(config, decoder=True) if isinstance(config, ModelConfig) else Tokenizer(config)
        return {k: v.shape for k, v in module.state_dict().items()}


def _load(module, path: Path, config, expected: str):
    """Fill ``module`` from a checkpoint file, after checking it against the full layout of ``config``."""
    state = read_state_dict(path)
    required = set(module.state_dict())
    check_state_dict(state, full_layout(config), required, expected, str(path))
    module.load_state_dict({k: state[k] for k in required}, strict=True)
    return module


class TerraMindModel:
    """A TerraMind model ready to run: configuration, weights, device and precision.

    Get one with ``xterramind.load_model``. The encoder is loaded at once; the decoder, which
    only generation needs, on first use. A handle pickles as its recipe (name, weights, device,
    precision, seed), never its tensors, so Dask graphs stay small and each worker loads the weights once.

    Example:
        >>> model = xterramind.load_model("terramind_v1_tiny", weights="random")
        >>> x = model.normalize("S2L2A", torch.full((1, 12, 224, 224), 1500.0))
        >>> model.encode({"S2L2A": x}, layers=-1).shape
        torch.Size([1, 196, 192])
    """

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.config = get_config(recipe.name)
        self.device = runtime.choose_device(recipe.device)
        self.precision = runtime.choose_precision(recipe.precision, self.device)
        self._path = None if recipe.weights == "random" else self._locate(recipe.weights)
        self._module: TerraMind | None = None
        self._tokenizers: dict[str, tuple[Tokenizer, str]] = {}
        self._lock = threading.Lock()

    def _locate(self, weights: str) -> Path:
        return locate_official(self.config) if weights == "auto" else Path(weights).expanduser()

    # -- identity -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's full name, e.g. ``"terramind_v1_base"`` (also for a handle loaded as ``"base"``)."""
        return self.config.name

    @property
    def is_random(self) -> bool:
        """Whether the weights are seeded random (``weights="random"``): fine for plumbing, not for results."""
        return self._path is None

    @functools.cached_property
    def weights_id(self) -> str:
        """``"random"`` or the sha256 of the checkpoint file: what results record as their weights."""
        return "random" if self._path is None else file_sha256(self._path)

    def __repr__(self) -> str:
        source = f"random(seed={self.recipe.seed})" if self.is_random else str(self._path)
        return f"TerraMindModel({self.name!r}, weights={source}, device={self.device}, precision={self.precision})"

    def __reduce__(self):
        return _shared_model, (self.recipe,)

    def __dask_tokenize__(self):
        return ("TerraMindModel", self.recipe)

    # -- the torch module -----------------------------------------------------------------------

    @property
    def module(self) -> TerraMind:
        """The loaded ``torch.nn.Module`` (the encoder, or the whole model once the decoder was needed)."""
        runtime.use_worker_settings()  # every model call comes here: in a Dask worker, torch on the worker's cores
        with self._lock:
            if self._module is None:
                self._module = self._build(decoder=False)
            return self._module

    def with_decoder(self) -> TerraMind:
        """The whole encoder-decoder, loading the decoder weights if not loaded yet.

        Generation calls it; call it yourself to pay the loading time up front.

        Example:
            >>> module = model.with_decoder()
            >>> module.has_decoder
            True
        """
        runtime.use_worker_settings()
        with self._lock:
            if self._module is None or not self._module.has_decoder:
                self._module = self._build(decoder=True)
            return self._module

    def _build(self, decoder: bool) -> TerraMind:
        module = TerraMind.empty(self.config, decoder=decoder)
        if self._path is None:
            init_seeded_(module, self.recipe.seed)
        else:
            _load(module, self._path, self.config, self.config.name)
        runtime.loads[self.name] += 1
        return module.eval().requires_grad_(False).to(self.device)

    # -- tokenizers -----------------------------------------------------------------------------

    def tokenizer(self, modality: str) -> Tokenizer:
        """The tokenizer of a modality (``"LULC"``, ``"S2L2A"``, ...), loaded on first use under the
        model's weights policy: seeded random with ``weights="random"``, else the file given in
        ``load_model(..., tokenizers={...})``, else the official file (found like the model's).

        Example:
            >>> tokenizer = model.tokenizer("LULC")
            >>> tokenizer.config.modality
            'tok_LULC'
        """
        config = tokenizer_config(modality, self.config.tokenizers)
        runtime.use_worker_settings()
        with self._lock:
            if config.name not in self._tokenizers:
                self._tokenizers[config.name] = self._build_tokenizer(config)
            return self._tokenizers[config.name][0]

    def coords_tokenizer(self) -> CoordsTokenizer:
        """The coordinates vocabulary: the file given as ``tokenizers={"coords": path}``, else the official
        ``config.json`` (``$XTERRAMIND_WEIGHTS_DIR``, the Hugging Face cache, then the hub).

        Example:
            >>> ids = model.coords_tokenizer().encode([[-75.8, 37.6]])   # on the CPU
        """
        with self._lock:
            if "coords" not in self._tokenizers:
                path = dict(self.recipe.tokenizers).get("coords") or locate_official(CoordsVocabulary())
                tokenizer = CoordsTokenizer(path)
                runtime.loads["tokenizer coords"] += 1
                self._tokenizers["coords"] = (tokenizer, file_sha256(path))
            return self._tokenizers["coords"][0]

    def tokenize_coords(self, lonlat) -> torch.Tensor:
        """``(B, 2)`` longitude/latitude in degrees -> token ids ``(B, L)`` for the ``coords`` input.

        Example:
            >>> model.encode({"S2L2A": x, "coords": model.tokenize_coords([[-75.8, 37.6]])})
        """
        return self.coords_tokenizer().encode(lonlat).to(self.device)

    def tokenizer_weights_id(self, modality: str) -> str:
        """``"random"`` or the sha256 of the tokenizer's checkpoint (or, for coords, vocabulary) file:
        what generated results record, next to ``weights_id``. Loads the tokenizer if needed.

        Example:
            >>> model.tokenizer_weights_id("LULC")
            'random'
        """
        if modality == "coords":
            self.coords_tokenizer()
            return self._tokenizers["coords"][1]
        self.tokenizer(modality)
        return self._tokenizers[tokenizer_config(modality, self.config.tokenizers).name][1]

    def _build_tokenizer(self, config: TokenizerConfig) -> tuple[Tokenizer, str]:
        module = Tokenizer.empty(config)
        path = dict(self.recipe.tokenizers).get(config.name)
        if path is None and self._path is not None:
            path = locate_official(config)
        if path is None:
            init_seeded_(module, self.recipe.seed + zlib.crc32(config.name.encode()))
            identity = "random"
        else:
            _load(module, Path(path), config, f"the {config.name} tokenizer")
            identity = file_sha256(path)
        runtime.loads[f"tokenizer {config.name}"] += 1
        return module.eval().requires_grad_(False).to(self.device), identity

    # -- running --------------------------------------------------------------------------------

    def encode(self, inputs, *, merge: str = "mean", layers=None):
        """Encode standardized inputs on the model's device and precision.

        Inputs may be tensors or numpy arrays; outputs are float32 tensors on the model's device.

        Args:
            inputs (Mapping[str, Tensor | ndarray]): modality name -> data. Raw images (``"S2L2A"``,
                ``"S2L1C"``, ``"RGB"``, ``"S1GRD"``, ``"S1RTC"``, ``"DEM"``) as standardized ``(B, C, H, W)``
                floats with H and W multiples of 16 (see ``normalize``); token grids (``"tok_LULC"``, ...)
                as ``(B, h, w)`` token ids; ``"coords"`` as ``(B, L)`` token ids (``tokenize_coords``).
            merge: how modalities are combined: ``"mean"`` or ``"max"`` (``(B, N, D)``), ``"concat"`` along
                features, ``"dict"`` (name -> ``(B, N_m, D)``) or ``"none"`` (the raw token sequence).
            layers (int | Sequence[int] | None): ``None`` for every layer (a list), an index such as ``-1``
                for one layer, or a list of indices. Only the last layer has the final norm applied.

        Example:
            >>> out = model.encode({"S2L2A": x, "S1GRD": s1}, merge="mean", layers=None)
            >>> len(out), out[-1].shape   # every layer; the last normalized
            (12, torch.Size([2, 196, 192]))
        """
        module = self.module
        tensors = _tensors(inputs, self.device)
        with torch.inference_mode(), runtime.autocast(self.device, self.precision):
            result = module.encode(tensors, merge=merge, layers=layers)
        return _to_float32(result)

    def tokenize(self, modality: str, x):
        """Standardized pixels ``(B, C, H, W)`` (LULC: class ids ``(B, H, W)``) -> int32 tokens ``(B, H/16, W/16)``.

        Example:
            >>> tokens = model.tokenize("S2L2A", model.normalize("S2L2A", pixels))
        """
        tokenizer = self.tokenizer(modality)
        x = _as_tensor(modality, x)
        _check_pixels(modality, x, tokenizer.config)
        with torch.inference_mode(), runtime.autocast(self.device, self.precision):
            return tokenizer.encode(x.to(self.device))[1]

    def detokenize(self, modality: str, tokens, *, seeds=None, timesteps: int = 50):
        """Tokens ``(B, h, w)`` -> LULC class logits, or standardized pixels from a DDIM decode whose
        initial noise comes from one generator per item seeded with ``seeds`` (default 0, 1, ...).

        Args:
            modality: ``"LULC"``, ``"S2L2A"``, ``"S1GRD"``, ...
            tokens (Tensor | ndarray): int token ids ``(B, h, w)``, e.g. from ``tokenize`` or
                ``generate`` with ``decode=False``.
            seeds (Sequence[int] | None): one seed per item; the same seed gives the same pixels.
            timesteps: diffusion steps for images (50, as the reference; fewer is faster and coarser).

        Example:
            >>> pixels = model.detokenize("S2L2A", tokens, seeds=[0], timesteps=10)
            >>> model.denormalize("S2L2A", pixels)   # back to reflectance x 10000
        """
        tokenizer, tokens = self.tokenizer(modality), _as_tensor(modality, tokens)
        _check_token_grid(modality, tokens, tokenizer.config.vocab_size)
        tokens = tokens.to(self.device)
        seeds = range(len(tokens)) if seeds is None else _seeds(seeds, len(tokens))
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        with torch.inference_mode(), runtime.autocast(self.device, self.precision):
            out = decode_targets({tokenizer.config.modality: tokenizer}, {tokenizer.config.modality: tokens}, generators, timesteps)
        return _to_float32(out[tokenizer.config.modality])

    def generate(self, inputs, targets, *, seeds, top_k: int = 0, top_p: float = 0.8, temperature: float = 1.0,
                 timesteps: int = 50, decode: bool = True) -> dict:
        """Generate ``targets`` (e.g. ``["LULC"]``, ``["S1GRD", "LULC"]``) from standardized ``inputs`` for a
        batch of tiles, one seed per tile. Returns, per target, LULC class logits or standardized pixels
        (or, with ``decode=False``, the token grids). Each tile's result depends only on its own inputs
        and seed, and one tile with seed ``s`` reproduces IBM's reference generation with seed ``s``.

        Example:
            >>> out = model.generate({"S2L2A": x}, ["LULC"], seeds=list(range(len(x))))   # x: (B, 12, 224, 224)
            >>> out["LULC"].argmax(1)   # class ids 0..9, (B, 224, 224)
        """
        module = self.with_decoder()
        tensors = _tensors(inputs, self.device)
        names = [token_spec(t).name for t in ([targets] if isinstance(targets, str) else targets)]
        seeds = _seeds(seeds, _batch(tensors))
        first = next(iter(tensors.values()))
        grid = (first.shape[-2] // self.config.patch_size, first.shape[-1] // self.config.patch_size)
        sampling = Sampling(top_k, top_p, temperature, timesteps)
        with torch.inference_mode(), runtime.autocast(self.device, self.precision):
            tokens, generators = sample_targets(module, tensors, names, seeds, grid, sampling)
            if not decode:
                return {name.removeprefix("tok_"): grid for name, grid in tokens.items()}
            tokenizers = {name: self.tokenizer(name) for name in names}
            out = decode_targets(tokenizers, tokens, generators, timesteps)
        return {name.removeprefix("tok_"): _to_float32(value) for name, value in out.items()}

    def normalize(self, name: str, x, *, inplace: bool = False):
        """Standardize ``(..., C, H, W)`` data in physical units with the model's statistics (``inplace``: into
        ``x`` itself, floats only: no second full-size buffer; the same values).

        Works on tensors and numpy arrays alike and keeps their type; TerraMind only sees standardized
        inputs, so every raw image goes through here first.

        Args:
            name: the modality, e.g. ``"S2L2A"`` (12 bands) or ``"S1GRD"`` (VV, VH in dB).
            x (Tensor | ndarray): the data, its channels in the modality's band order.

        Raises:
            InputError: the channel count is not the modality's, or it has no statistics (token inputs).

        Example:
            >>> x = model.normalize("S2L2A", torch.full((1, 12, 224, 224), 1500.0))
        """
        mean, std = _stats(name, x)
        if inplace:
            x -= mean
            x /= std
            return x
        return (x - mean) / std

    def denormalize(self, name: str, x):
        """Undo ``normalize``: standardized values back to physical units.

        Example:
            >>> image = model.denormalize("S2L2A", model.generate({"S1GRD": s1}, ["S2L2A"], seeds=[0])["S2L2A"])
        """
        mean, std = _stats(name, x)
        return x * std + mean


def _as_tensor(name: str, value) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name}: expected a tensor or numpy array, got {type(value).__name__}") from None


def _tensors(inputs, device) -> dict[str, torch.Tensor]:
    if not isinstance(inputs, Mapping) or not inputs:
        given = "no inputs" if isinstance(inputs, Mapping) else f"inputs must be a dict, got {type(inputs).__name__}"
        raise InputError(f"{given}: pass a dict of modality name -> tensor, e.g. {{'S2L2A': x}} with x of shape (B, 12, H, W)")
    return {name: _as_tensor(name, value).to(device) for name, value in inputs.items()}


_LAYOUTS = {"image": "(B, C, H, W)", "tokens": "(B, h, w)", "sequence": "(B, L)"}


def _batch(tensors: dict[str, torch.Tensor]) -> int:
    """The number of tiles in the inputs, once each has its batch axis (checked here so that a missing one is
    not reported as a wrong number of seeds)."""
    for name, tensor in tensors.items():
        layout = _LAYOUTS[resolve_modality(name).kind]
        if tensor.ndim != layout.count(",") + 1:
            hint = "; for one tile add the batch axis: x[None]" if tensor.ndim == layout.count(",") else ""
            raise InputError(f"{name}: expected a batch {layout}, got shape {tuple(tensor.shape)}{hint}")
    return next(iter(tensors.values())).shape[0]


def _seeds(seeds, batch: int) -> list[int]:
    try:
        given = [int(seed) for seed in seeds]
    except TypeError:  # one int, or None
        given = None
    if given is None or len(given) != batch:
        raise InputError(f"seeds must hold one seed per tile, {batch} for this batch, e.g. seeds=list(range({batch})) "
                         f"or seeds=[7] * {batch}; got {seeds!r}")
    return given


def _check_token_grid(modality: str, tokens: torch.Tensor, vocab_size: int) -> None:
    if tokens.ndim != 3 or tokens.is_floating_point() or tokens.is_complex() or 0 in tokens.shape:
        hint = ""
        if tokens.ndim == 2:
            side = math.isqrt(tokens.shape[1])
            hint = "; one (h, w) grid needs a batch axis: tokens[None]"
            if side * side == tokens.shape[1]:
                hint = f"; flat grids of {tokens.shape[1]} tokens: tokens.reshape({tokens.shape[0]}, {side}, {side}){hint}"
        raise InputError(f"{modality}: expected integer token ids of shape (B, h, w), got {tokens.dtype} "
                         f"{tuple(tokens.shape)}{hint}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise InputError(f"{modality}: token ids must lie in [0, {vocab_size}), got [{low}, {high}] (tokenize() on a "
                         "cube marks nodata -1: replace those, e.g. tokens.clip(min=0), or leave them out)")


def _check_pixels(modality: str, x: torch.Tensor, config: TokenizerConfig) -> None:
    """A tokenizer's input: standardized ``(B, C, H, W)`` floats; LULC also class ids ``(B, H, W)`` or ``(B, 1, H, W)``."""
    ids = not config.diffusion and not x.is_floating_point() and (x.ndim == 3 or (x.ndim == 4 and x.shape[1] == 1))
    if not ids and (x.ndim != 4 or x.shape[1] != config.channels or not x.is_floating_point()):
        layout = f"standardized floats (B, {config.channels}, H, W) (model.normalize)"
        if not config.diffusion:
            layout = f"class ids (B, H, W) in 0..{config.channels - 1}, or {config.channels} class scores (B, {config.channels}, H, W)"
        raise InputError(f"{modality}: the tokenizer takes {layout}; got {x.dtype} {tuple(x.shape)}")
    if ids and x.numel() and (int(x.min()) < 0 or int(x.max()) >= config.channels):
        raise InputError(f"{modality}: class ids must lie in 0..{config.channels - 1}, got [{int(x.min())}, {int(x.max())}]")
    if x.shape[-2] % config.patch or x.shape[-1] % config.patch or 0 in x.shape[-2:]:
        raise InputError(f"{modality}: height and width must be positive multiples of {config.patch}, got {tuple(x.shape[-2:])}")


def _stats(name: str, x):
    try:
        spec = resolve_modality(name)
    except UnknownModalityError:
        spec = resolve_modality(f"tok_{name}")  # LULC, NDVI: pixels of a token modality
    if not spec.mean:
        raise InputError(f"{spec.name} has no normalization statistics (it is a sequence of token ids)")
    if x.ndim < 3 or x.shape[-3] != len(spec.mean):
        raise InputError(f"{spec.name}: expected (..., {len(spec.mean)}, H, W) data, got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        as_array = functools.partial(torch.tensor, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    else:
        as_array = functools.partial(np.asarray, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
    return as_array(spec.mean)[:, None, None], as_array(spec.std)[:, None, None]


def _to_float32(result):
    if isinstance(result, torch.Tensor):
        return result.float() if result.is_floating_point() else result
    if isinstance(result, dict):
        return {k: _to_float32(v) for k, v in result.items()}
    return [_to_float32(v) for v in result]


def _shared_model(recipe: Recipe) -> TerraMindModel:
    return runtime.shared(recipe, lambda: TerraMindModel(recipe))


def load_model(
    name: str,
    weights: str | os.PathLike = "auto",
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    seed: int = 0,
    tokenizers: dict | None = None,
) -> TerraMindModel:
    """Load a TerraMind model.

    Args:
        name: one of ``xterramind.list_models`` (``"tiny"`` works for ``"terramind_v1_tiny"``).
        weights: ``"auto"`` for the official checkpoint (``$XTERRAMIND_WEIGHTS_DIR``, the local
            Hugging Face cache, then the hub), ``"random"`` for seeded untrained weights, or the path
            of a ``.pt`` or ``.safetensors`` state dict.
        device: ``"auto"`` (a CUDA GPU if present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"auto"`` (bf16 on GPUs that support it, else fp32), ``"fp32"``, ``"bf16"``, ``"fp16"``.
        seed: the seed of ``weights="random"``.
        tokenizers: tokenizer files by modality (``{"LULC": "TerraMind_Tokenizer_LULC.pt"}``, and
            ``"coords"`` for the coordinates vocabulary ``config.json``) for the ones not to take from the
            weights policy; tokenizers load when first needed.

    Example:
        >>> model = xterramind.load_model("terramind_v1_base")            # official weights
        >>> model = xterramind.load_model("tiny", weights="random", device="cpu")
    """
    if not isinstance(weights, (str, os.PathLike)):
        raise InputError(f"weights must be 'auto', 'random' or a file path, got {type(weights).__name__}")
    if weights not in ("auto", "random"):
        if not Path(weights).expanduser().exists():  # a misspelt policy, or a wrong path
            raise WeightsUnavailableError(f"weights={str(weights)!r}: file not found; pass weights='auto' (the "
                                          "official checkpoint), 'random' (seeded, untrained) or a .pt/.safetensors file")
        weights = str(Path(weights).expanduser().resolve())
    overrides = tuple(sorted(
        ("coords" if modality == "coords" else tokenizer_config(modality, get_config(name).tokenizers).name,
         str(Path(path).expanduser().resolve()))
        for modality, path in (tokenizers or {}).items()
    ))
    recipe = Recipe(get_config(name).name, weights, str(device), precision, int(seed), overrides)
    model = _shared_model(recipe)
    _ = model.module  # load now: a bad file or a wrong variant should fail here, not in a worker
    return model
