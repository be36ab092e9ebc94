"""Quicklook pictures: embeddings as RGB (their first three principal components) and true colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["LULC_COLOURS", "lulc_rgb", "principal_rgb", "save_side_by_side", "true_colour"]

FIT_SAMPLES = 100_000  # principal axes are fitted on at most this many cells

# The usual land-cover colours (Esri 10 m land cover) for TerraMind's classes 0..9; no data is black.
LULC_COLOURS = np.array([
    (0, 0, 0), (65, 155, 223), (57, 125, 73), (122, 135, 198), (228, 150, 53), (196, 40, 27), (165, 155, 143),
    (168, 235, 255), (97, 97, 97), (227, 226, 195)], dtype=np.uint8)


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


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = np.percentile(values, [2, 98], axis=0)
    scaled = (values - low) / np.where(high > low, high - low, 1.0)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8)


def save_side_by_side(path: str | Path, *images: np.ndarray, height: int = 480) -> Path:
    """Save images next to each other, each scaled (nearest neighbour) to ``height`` px tall; a PNG without
    matplotlib.

    Example:
        >>> save_side_by_side("quicklook.png", true_colour(red, green, blue), principal_rgb(embeddings.values))
    """
    from PIL import Image

    panels = [Image.fromarray(image).resize((round(image.shape[1] * height / image.shape[0]), height), Image.NEAREST)
              for image in images]
    gap = 8
    canvas = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), height), "white")
    left = 0
    for panel in panels:
        canvas.paste(panel, (left, 0))
        left += panel.width + gap
    path = Path(path)
    canvas.save(path)
    return path
