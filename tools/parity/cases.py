"""The parity cases: which inputs go into which model, shared by the golden writer and the tests.

Inputs are not stored in the goldens; both sides rebuild them from these specs with seeded
generators (the goldens keep a checksum of each, so drift in the generator is caught).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

SEED = 20260427  # the seed of the random weights the goldens were made with


@dataclass(frozen=True)
class InputSpec:
    name: str  # xterramind's modality name
    key: str  # the reference's key
    shape: tuple[int, ...]
    vocab: int = 0  # token ids in [0, vocab); 0 means standardized floats


@dataclass(frozen=True)
class EncoderCase:
    name: str
    variant: str
    inputs: tuple[InputSpec, ...]
    merge: str
    layers: tuple[int, ...]


@dataclass(frozen=True)
class DecoderCase:
    """One decoding pass of generation: encoder over the visible tokens, logits for ``num_select`` cells."""

    name: str
    variant: str
    inputs: tuple[InputSpec, ...]
    visible: dict = field(default_factory=dict)  # input name -> visible token count per batch item
    target: str = "tok_LULC"
    target_key: str = "tok_lulc@224"
    grid: tuple[int, int] = (14, 14)
    num_select: int = 8
    seed: int = 7


def make_input(case: str, spec: InputSpec) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(f"{case}:{spec.name}".encode()))
    if spec.vocab:
        return torch.randint(0, spec.vocab, spec.shape, generator=generator)
    return torch.randn(spec.shape, generator=generator)


def hidden_mask(case: str, name: str, batch: int, length: int, visible: tuple[int, ...]) -> torch.Tensor:
    """``(batch, length)`` bools, True where hidden; item b keeps ``visible[b]`` scattered tokens."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{case}:{name}:mask".encode()))
    hidden = torch.ones(batch, length, dtype=torch.bool)
    for item, count in enumerate(visible):
        hidden[item, torch.randperm(length, generator=generator)[:count]] = False
    return hidden


def checksum(tensor: torch.Tensor) -> list[float]:
    flat = tensor.double().flatten()
    return [float(flat.sum()), float(flat.abs().sum()), float(flat[: min(7, flat.numel())].sum())]


def _image(name: str, key: str, channels: int, batch: int, height: int, width: int | None = None) -> InputSpec:
    return InputSpec(name, key, (batch, channels, height, width or height))


def _tokens(name: str, key: str, vocab: int, batch: int, grid: int) -> InputSpec:
    return InputSpec(name, key, (batch, grid, grid), vocab)


def _coords(batch: int) -> InputSpec:
    return InputSpec("coords", "coords", (batch, 4), 30000)


def encoder_cases(variant: str) -> list[EncoderCase]:
    """Tiny keeps every layer; the SwiGLU variant keeps three layers to keep the goldens small."""
    big = variant != "tiny"
    batch = 1 if big else 2
    layers = (0, 6, 11) if big else tuple(range(12))
    s2 = _image("S2L2A", "untok_sen2l2a@224", 12, batch, 224)
    native = (
        s2,
        _tokens("tok_LULC", "tok_lulc@224", 4375, batch, 14),
        _tokens("tok_NDVI", "tok_ndvi@224", 15360, batch, 14),
        _coords(batch),
    )
    small = (
        _image("S2L2A", "untok_sen2l2a@224", 12, batch, 64),
        _image("S1GRD", "untok_sen1grd@224", 2, batch, 64),
        _image("DEM", "untok_dem@224", 1, batch, 64),
        _tokens("tok_LULC", "tok_lulc@224", 4375, batch, 4),
        _coords(batch),
    )
    rest = (
        _image("S2L1C", "untok_sen2l1c@224", 13, 1, 96),
        _image("RGB", "untok_sen2rgb@224", 3, 1, 96),
        _image("S1RTC", "untok_sen1rtc@224", 2, 1, 96),
        _tokens("tok_S2L2A", "tok_sen2l2a@224", 15360, 1, 6),
        _tokens("tok_S1GRD", "tok_sen1grd@224", 15360, 1, 6),
        _tokens("tok_S1RTC", "tok_sen1rtc@224", 15360, 1, 6),
        _tokens("tok_DEM", "tok_dem@224", 15360, 1, 6),
    )
    cases = [EncoderCase("native224_mean", variant, native, "mean", (0, 6, 11) if big else layers)]
    cases += [EncoderCase(f"small64_{merge}", variant, small, merge, layers) for merge in ("mean", "max", "concat", "dict", "none")]
    cases.append(EncoderCase("rest96_dict", variant, rest, "dict", (11,) if big else layers))
    if not big:
        wide = (_image("S2L2A", "untok_sen2l2a@224", 12, 2, 64, 96),)
        cases.append(EncoderCase("nonsquare_mean", variant, wide, "mean", (11,)))
    return cases


def decoder_cases(variant: str) -> list[DecoderCase]:
    chained = DecoderCase(
        "chained_lulc",
        variant,
        (
            _image("S2L2A", "untok_sen2l2a@224", 12, 2, 64),
            _coords(2),
            _tokens("tok_LULC", "tok_lulc@224", 4375, 2, 4),
        ),
        visible={"tok_LULC": (3, 7), "coords": (4, 3)},
        grid=(4, 4),
        num_select=6,
    )
    fresh = DecoderCase(
        "fresh_s1grd",
        variant,
        (_image("S2L2A", "untok_sen2l2a@224", 12, 1, 224),),
        target="tok_S1GRD",
        target_key="tok_sen1grd@224",
        num_select=8,
    )
    return [chained, fresh]


# -- tokenizers and generation -----------------------------------------------------------------------

TOKENIZER_NAMES = ("S2L2A", "S1GRD", "S1RTC", "DEM", "NDVI", "LULC")
FILTER_SETTINGS = ((0, 0.8), (5, 0.0), (5, 0.9), (0, 0.0), (1, 0.8))  # (top_k, top_p)
GENERATE_TIMESTEPS = 2  # diffusion steps in the golden whole-generate and whole-decode cases
GENERATION_SEED = 20250101  # random.seed() before the reference draws its generation seed


def tokenizer_input(name: str, channels: int, size: int = 224) -> torch.Tensor:
    """A seeded input for a tokenizer: class ids for LULC, standardized noise for images."""
    spec = InputSpec(name, name, (1, size, size), 10) if name == "LULC" else InputSpec(name, name, (1, channels, size, size))
    return make_input(f"tokenizer-{name}", spec)


def token_grid(name: str, vocab: int, grid: int = 14) -> torch.Tensor:
    return make_input(f"tokens-{name}", InputSpec(name, name, (1, grid, grid), vocab))
