"""Fixed sine-cosine positional embeddings and their resizing, exactly as TerraMind builds them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 10000.0


def _frequencies(count: int) -> torch.Tensor:
    return 1.0 / TEMPERATURE ** (torch.arange(count, dtype=torch.float32) / count)


def sincos_1d(length: int, dim: int) -> torch.Tensor:
    """``(1, length, dim)``: ``[sin(p w), cos(p w)]`` for positions ``p`` and ``dim / 2`` frequencies."""
    angles = torch.arange(length, dtype=torch.float32)[:, None] * _frequencies(dim // 2)[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[None]


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """``(1, grid * grid, dim)`` for a square token grid in row-major order.

    The features are ``[sin(r w), cos(r w), sin(c w), cos(c w)]``: the first half encodes the
    token's row ``r``, the second its column ``c`` (TerraMind's ``meshgrid(..., indexing="ij")``).
    """
    omega = _frequencies(dim // 4)
    index = torch.arange(grid * grid)
    rows = (index // grid).to(torch.float32)[:, None] * omega[None]
    cols = (index % grid).to(torch.float32)[:, None] * omega[None]
    return torch.cat([rows.sin(), rows.cos(), cols.sin(), cols.cos()], dim=1)[None]


def resize_grid(pos_emb: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a square ``(1, n * n, D)`` table to ``(1, height * width, D)`` by bicubic interpolation.

    TerraMind resizes the stored 14 x 14 table rather than recomputing sine-cosine values for the
    new grid; matching its numbers means doing the same.
    """
    size = round(pos_emb.shape[1] ** 0.5)
    if (size, size) == (height, width):
        return pos_emb
    dim = pos_emb.shape[2]
    table = pos_emb.reshape(1, size, size, dim).permute(0, 3, 1, 2)
    table = F.interpolate(table, size=(height, width), mode="bicubic", align_corners=False)
    return table.permute(0, 2, 3, 1).reshape(1, height * width, dim)
