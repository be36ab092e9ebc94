"""Quicklook pictures: embeddings as RGB (their first three principal components) and true colour."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .facts import LULC_COLOURS

__all__ = ["LULC_COLOURS", "lulc_rgb", "principal_rgb", "random_weights_note", "save_side_by_side", "true_colour"]

FIT_SAMPLES = 100_000  # principal axes are fitted on at most this many cells
BANNER_COLOUR = (150, 0, 0)  # the dark red of the note on pictures made with random weights


def principal_rgb(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(D, H, W)`` embeddings -> ``(H, W, 3)`` uint8: the first three principal components, each
    stretched between its 2nd and 98th percentile. Cells with NaN come out black.

    Example:
        >>> rgb = principal_rgb(embeddings.values)          # (H, W, 3) uint8
    """
    features, height, width = embeddings.shape
    cells = embeddings.reshape(features, -1).T.astype(np.float64)
    valid = np.isfinite(cells).all(axis=1)
    rgb = np.zeros((height * width, 3), dtype=np.uint8)
    if valid.sum() < 3:
        return rgb.reshape(height, width, 3)
    sample = cells[valid]
    if len(sample) > FIT_SAMPLES:
        sample = sample[np.random.default_rng(seed).choice(len(sample), FIT_SAMPLES, replace=False)]
    mean = sample.mean(axis=0)
    _, _, axes = np.linalg.svd(sample - mean, full_matrices=False)
    components = (cells[valid] - mean) @ axes[:3].T
    components *= np.sign(axes[:3].sum(axis=1))  # a stable orientation, so reruns look alike
    rgb[valid] = _stretch(components)
    return rgb.reshape(height, width, 3)


def true_colour(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Three bands -> ``(H, W, 3)`` uint8 with a 2-98 % stretch per band (any three: true or false colour).

    Example:
        >>> rgb = true_colour(*cube.sel(band=["B04", "B03", "B02"]).values.astype("float32"))
    """
    stacked = np.stack([red, green, blue], axis=-1).astype(np.float64).reshape(-1, 3)
    valid = np.isfinite(stacked).all(axis=1)
    rgb = np.zeros_like(stacked, dtype=np.uint8)
    rgb[valid] = _stretch(stacked[valid])
    return rgb.reshape(*red.shape, 3)


def lulc_rgb(classes: np.ndarray) -> np.ndarray:
    """Class ids 0..9 ``(H, W)`` -> ``(H, W, 3)`` uint8 in the usual land-cover colours.

    Example:
        >>> rgb = lulc_rgb(lulc.LULC.values)
    """
    return LULC_COLOURS[np.clip(np.asarray(classes), 0, len(LULC_COLOURS) - 1)]


def random_weights_note(attrs: Mapping) -> str | None:
    """What a picture of a result must say on it when the result was made with random weights (model or
    tokenizer, as its attrs record), or None for trained weights and for data.

    Example:
        >>> random_weights_note(lulc.attrs)
        "made with random weights (seed 0), not TerraMind's trained model"
        >>> random_weights_note(cube.attrs) is None
        True
    """
    tokenizers = attrs.get("tokenizers")
    sources = [attrs.get("weights"), attrs.get("tokenizer_weights"),
               *(tokenizers.values() if isinstance(tokenizers, Mapping) else ())]
    if "random" not in sources:
        return None
    return attrs.get("warning") or "made with random weights, not TerraMind's trained model"


def _banner(note: str, width: int, size: int):
    """``note`` in white on dark red, ``size`` px tall letters, wrapped into lines that fit ``width`` px."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size)
    per_line = max(1, int(len(note) * (width - 2 * size) / font.getlength(note)))  # characters of average width
    lines = textwrap.wrap(note, per_line)
    step = round(1.3 * size)
    banner = Image.new("RGB", (width, step * len(lines) + size), BANNER_COLOUR)
    draw = ImageDraw.Draw(banner)
    for row, line in enumerate(lines):
        x0, _, x1, _ = draw.textbbox((0, 0), line, font=font)  # centred by hand: bitmap fonts take no anchor
        draw.text(((width - x1 - x0) / 2, size / 2 + row * step), line, fill="white", font=font)
    return banner


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, [2, 98], axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def save_side_by_side(path: str | Path, *images: np.ndarray, height: int = 480, note: str | None = None) -> Path:
    """Save images next to each other, each scaled (nearest neighbour) to ``height`` px tall; a PNG without
    matplotlib. A ``note`` is written in a banner above them: say there when a panel was made with random
    weights (``note=random_weights_note(result.attrs)``), so the picture is not taken for a result.

    Example:
        >>> save_side_by_side("quicklook.png", true_colour(red, green, blue), principal_rgb(embeddings.values),
        ...                   note=random_weights_note(embeddings.attrs))
    """
    from PIL import Image

    panels = [Image.fromarray(image).resize((round(image.shape[1] * height / image.shape[0]), height), Image.NEAREST)
              for image in images]
    gap = 8
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    banner = _banner(note, width, size=max(12, height // 24)) if note else Image.new("RGB", (width, 0))
    canvas = Image.new("RGB", (width, banner.height + height), "white")
    canvas.paste(banner, (0, 0))
    left = 0
    for panel in panels:
        canvas.paste(panel, (left, banner.height))
        left += panel.width + gap
    path = Path(path)
    canvas.save(path)
    return path
