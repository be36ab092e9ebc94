"""The one registry of TerraMind facts: modalities, their statistics, model variants and checkpoints.

Everything here is data. Names and numbers follow the official v1 checkpoints
(``ibm-esa-geospatial/TerraMind-1.0-*``); the checkpoint keys (``untok_sen2l2a@224``, ...) are the
sub-keys of the state dict, so they must never change.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from ..errors import UnknownModalityError, UnknownModelError

__all__ = [
    "DECODER_MODALITIES",
    "ENCODER_MODALITIES",
    "MODELS",
    "TOKENIZERS",
    "ModalitySpec",
    "ModelConfig",
    "TokenizerConfig",
    "get_config",
    "list_models",
    "resolve_modality",
    "tokenizer_config",
]

S2L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

# v1 pretraining statistics (terratorch `v1_pretraining_mean/std`); token modalities that have a
# tokenizer share the statistics of their raw counterpart.
S2L2A_MEAN = (1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234, 3132.22, 3162.988, 2424.884, 1857.648)
S2L2A_STD = (2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829, 1797.379, 1434.261, 1334.311)
S2L1C_MEAN = (2357.089, 2137.385, 2018.788, 2082.986, 2295.651, 2854.537, 3122.849, 3040.56, 3306.481, 1473.847, 506.07, 2472.825, 1838.929)
S2L1C_STD = (1624.683, 1675.806, 1557.708, 1833.702, 1823.738, 1733.977, 1732.131, 1679.732, 1727.26, 1024.687, 442.165, 1331.411, 1160.419)
S1GRD_MEAN, S1GRD_STD = (-12.599, -20.293), (5.195, 5.890)
S1RTC_MEAN, S1RTC_STD = (-10.93, -17.329), (4.391, 4.459)
DEM_MEAN, DEM_STD = (670.665,), (951.272,)

Kind = Literal["image", "tokens", "sequence"]


@dataclass(frozen=True)
class ModalitySpec:
    """One input or output of TerraMind.

    ``name`` is what users type; ``key`` is the checkpoint's sub-key. ``image`` modalities take
    standardized ``(B, C, H, W)`` floats, ``tokens`` modalities take ``(B, h, w)`` token ids from a
    tokenizer, ``sequence`` modalities take ``(B, L)`` token ids.
    """

    name: str
    key: str
    kind: Kind
    bands: tuple[str, ...] = ()
    units: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    vocab_size: int = 0
    max_length: int = 0

    @property
    def channels(self) -> int:
        return len(self.bands)


_SPECS = (
    ModalitySpec("S2L2A", "untok_sen2l2a@224", "image", S2L2A_BANDS, "L2A reflectance x 10000", S2L2A_MEAN, S2L2A_STD),
    ModalitySpec("S2L1C", "untok_sen2l1c@224", "image", S2L1C_BANDS, "L1C reflectance x 10000", S2L1C_MEAN, S2L1C_STD),
    ModalitySpec("RGB", "untok_sen2rgb@224", "image", ("RED", "GREEN", "BLUE"), "8-bit", (87.271, 80.931, 66.667), (58.767, 47.663, 42.631)),
    ModalitySpec("S1GRD", "untok_sen1grd@224", "image", ("VV", "VH"), "dB", S1GRD_MEAN, S1GRD_STD),
    ModalitySpec("S1RTC", "untok_sen1rtc@224", "image", ("VV", "VH"), "dB", S1RTC_MEAN, S1RTC_STD),
    ModalitySpec("DEM", "untok_dem@224", "image", ("DEM",), "m", DEM_MEAN, DEM_STD),
    ModalitySpec("tok_S2L2A", "tok_sen2l2a@224", "tokens", mean=S2L2A_MEAN, std=S2L2A_STD, vocab_size=15360),
    ModalitySpec("tok_S1GRD", "tok_sen1grd@224", "tokens", mean=S1GRD_MEAN, std=S1GRD_STD, vocab_size=15360),
    ModalitySpec("tok_S1RTC", "tok_sen1rtc@224", "tokens", mean=S1RTC_MEAN, std=S1RTC_STD, vocab_size=15360),
    ModalitySpec("tok_DEM", "tok_dem@224", "tokens", mean=DEM_MEAN, std=DEM_STD, vocab_size=15360),
    ModalitySpec("tok_LULC", "tok_lulc@224", "tokens", mean=(0.0,), std=(1.0,), vocab_size=4375),
    ModalitySpec("tok_NDVI", "tok_ndvi@224", "tokens", mean=(0.327,), std=(0.322,), vocab_size=15360),
    ModalitySpec("coords", "coords", "sequence", vocab_size=30000, max_length=4),
)

MODALITIES: dict[str, ModalitySpec] = {spec.key: spec for spec in _SPECS}
# The checkpoint's embeddings, in the order the official files list them.
ENCODER_MODALITIES: tuple[str, ...] = tuple(spec.key for spec in _SPECS)
DECODER_MODALITIES: tuple[str, ...] = tuple(spec.key for spec in _SPECS if spec.kind != "image")

_ALIASES = {"s2rgb": "RGB", "location": "coords", "coord": "coords"}
_BY_NAME = {spec.name.lower(): spec for spec in _SPECS} | {spec.key.lower(): spec for spec in _SPECS}


def resolve_modality(name: str) -> ModalitySpec:
    """Find a modality by user name (``"S2L2A"``, ``"tok_LULC"``), alias or checkpoint key."""
    lowered = _ALIASES.get(name.lower(), name).lower()
    try:
        return _BY_NAME[lowered]
    except (KeyError, AttributeError):
        hint = ""
        if isinstance(name, str) and f"tok_{name.lower()}" in _BY_NAME:
            hint = (
                f" {name} enters the encoder as tokens: pass its token ids under 'tok_{name.upper()}'"
                " (shape (B, h, w), from the tokenizer)."
            )
        known = ", ".join(spec.name for spec in _SPECS)
        raise UnknownModalityError(f"unknown modality {name!r}.{hint} Known modalities: {known}.") from None


def token_spec(name: str) -> ModalitySpec:
    """The token modality of a generation target: ``"LULC"``, ``"S1GRD"`` or ``"tok_LULC"`` -> its token spec."""
    targets = [s.name.removeprefix("tok_") for s in _SPECS if s.kind == "tokens"]
    try:
        spec = resolve_modality(name)
    except UnknownModalityError:
        try:
            spec = resolve_modality(f"tok_{name}")
        except UnknownModalityError:
            raise UnknownModalityError(f"unknown generation target {name!r}; the targets are {targets}") from None
    if spec.kind == "image":
        try:
            spec = resolve_modality(f"tok_{spec.name}")
        except UnknownModalityError:
            spec = None
    if spec is not None and spec.kind == "sequence":
        raise UnknownModalityError(f"{spec.name} is an input only here (a location, not a raster); targets are {targets}")
    if spec is None or spec.kind != "tokens":
        raise UnknownModalityError(f"{name} cannot be generated; generation targets are {targets}")
    return spec


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one TerraMind variant and where its official checkpoint lives."""

    name: str
    dim: int
    num_heads: int
    encoder_depth: int
    decoder_depth: int
    swiglu: bool  # base/large: SwiGLU MLP and no linear biases; tiny/small: GELU with biases
    hub_repo: str | None = None
    filename: str | None = None
    patch_size: int = 16
    image_size: int = 224  # the positional-embedding grid is image_size / patch_size square
    pixel_size: float = 10.0  # metres: the ground pixel of the training data (TerraMesh, on Sentinel-2's 10 m grid)
    mlp_ratio: float = 4.0
    official: bool = True
    tokenizers: str = "official"  # which tokenizer configurations go with the model


    @property
    def bias(self) -> bool:
        return not self.swiglu

    @property
    def mlp_hidden(self) -> int:
        hidden = int(self.dim * self.mlp_ratio)
        return int(2 * hidden / 3) if self.swiglu else hidden

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


def _official(variant: str, dim: int, heads: int, enc: int, dec: int, swiglu: bool) -> ModelConfig:
    return ModelConfig(
        name=f"terramind_v1_{variant}",
        dim=dim,
        num_heads=heads,
        encoder_depth=enc,
        decoder_depth=dec,
        swiglu=swiglu,
        hub_repo=f"ibm-esa-geospatial/TerraMind-1.0-{variant}",
        filename=f"TerraMind_v1_{variant}.pt",
    )


MODELS: dict[str, ModelConfig] = {
    config.name: config
    for config in (
        _official("tiny", 192, 3, 12, 4, swiglu=False),
        _official("small", 384, 6, 12, 6, swiglu=False),
        _official("base", 768, 12, 12, 12, swiglu=True),
        _official("large", 1024, 16, 24, 24, swiglu=True),
        # Micro configurations with the official layout but toy sizes: fast tests and demos on
        # random weights. No checkpoint exists for them.
        ModelConfig("terramind_micro", 64, 1, 2, 1, swiglu=False, official=False, tokenizers="micro"),
        ModelConfig("terramind_micro_swiglu", 64, 1, 2, 1, swiglu=True, official=False, tokenizers="micro"),
    )
}


def list_models(include_micro: bool = False) -> list[str]:
    """Names accepted by ``xterramind.load_model``.

    Example:
        >>> xterramind.list_models()
        ['terramind_v1_tiny', 'terramind_v1_small', 'terramind_v1_base', 'terramind_v1_large']
    """
    return [name for name, config in MODELS.items() if config.official or include_micro]


def get_config(name: str) -> ModelConfig:
    """The configuration of a model by name; ``"tiny"`` is accepted for ``"terramind_v1_tiny"``.

    Example:
        >>> get_config("tiny").dim
        192
    """
    config = (MODELS.get(name) or MODELS.get(f"terramind_v1_{name}")) if isinstance(name, str) else None
    if config is None:
        # the micro test configurations are accepted but not offered, as in `xterramind models`
        short = [n.removeprefix("terramind_v1_") for n in list_models()]
        close = difflib.get_close_matches(name, [*MODELS, *short], n=1) if isinstance(name, str) else []
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Choose one of {list_models()} (or short: {short}).")
    return config


@dataclass(frozen=True)
class TokenizerConfig:
    """One of TerraMind's tokenizers: a ViT encoder, FSQ, and a decoder (a ViT for LULC's class logits,
    a diffusion UNet for images). Defaults are the official ViT-B/16 / UNet-256 sizes."""

    modality: str  # the token modality it produces, e.g. "tok_S2L2A"
    channels: int
    diffusion: bool
    levels: tuple[int, ...]
    hub_repo: str | None = None
    filename: str | None = None
    dim: int = 768
    depth: int = 12
    heads: int = 12
    patch: int = 16
    image_size: int = 256  # the stored position tables are (image_size / patch)^2
    unet_channels: int = 256
    unet_mult: tuple[int, ...] = (1, 2, 2, 2)
    unet_res_blocks: int = 3
    unet_attention: tuple[int, ...] = (4, 8)
    unet_patch: int = 4

    @property
    def name(self) -> str:
        return self.modality.removeprefix("tok_")

    @property
    def vocab_size(self) -> int:
        size = 1
        for level in self.levels:
            size *= level
        return size


def _tokenizer(name: str, channels: int, diffusion: bool = True, size: str = "official") -> TokenizerConfig:
    levels = (8, 8, 8, 6, 5) if diffusion else (7, 5, 5, 5, 5)
    if size == "micro":  # toy sizes with the official layout, for tests
        return TokenizerConfig(f"tok_{name}", channels, diffusion, levels, dim=64, depth=2, heads=1,
                               unet_channels=32, unet_mult=(1, 2), unet_res_blocks=1, unet_attention=(2,))
    return TokenizerConfig(f"tok_{name}", channels, diffusion, levels,
                           hub_repo=f"ibm-esa-geospatial/TerraMind-1.0-Tokenizer-{name}",
                           filename=f"TerraMind_Tokenizer_{name}.pt")


TOKENIZERS: dict[tuple[str, str], TokenizerConfig] = {
    (f"tok_{name}", size): _tokenizer(name, channels, diffusion=name != "LULC", size=size)
    for size in ("official", "micro")
    for name, channels in (("S2L2A", 12), ("S1GRD", 2), ("S1RTC", 2), ("DEM", 1), ("NDVI", 1), ("LULC", 10))
}


def tokenizer_config(modality: str, size: str = "official") -> TokenizerConfig:
    """The tokenizer of a token modality (``"LULC"``, ``"tok_LULC"`` or ``"tok_lulc@224"``)."""
    try:
        spec = resolve_modality(modality)
    except UnknownModalityError:
        spec = resolve_modality(f"tok_{modality}")
    config = TOKENIZERS.get((f"tok_{spec.name.removeprefix('tok_')}", size))
    if config is None:
        names = sorted({c.name for c in TOKENIZERS.values()})
        raise UnknownModalityError(f"{spec.name} has no tokenizer; tokenizers exist for {names}")
    return config
