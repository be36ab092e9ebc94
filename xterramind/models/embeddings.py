"""Per-modality embeddings: content tokens ``x`` plus position-and-modality embeddings ``emb``.

Each ``forward`` returns ``(x, emb)``; the model adds them. ``emb`` may have batch size 1 and
broadcast. Attribute names match the official state dict (``proj``, ``token_emb``, ``pos_emb``,
``mod_emb``, ``to_logits``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from .posemb import resize_grid, sincos_1d, sincos_2d

SEQUENCE_POSITIONS = 512  # the stored 1-D table is always this long


class _Embedding(nn.Module):
    def __init__(self, dim: int, table: Callable[[], torch.Tensor]):
        super().__init__()
        self._table = table
        self.register_buffer("pos_emb", table())
        self.mod_emb = nn.Parameter(torch.zeros(1, 1, dim))

    @torch.no_grad()
    def reset_pos_emb(self) -> None:
        """Recompute the fixed position table (after the module was allocated without values)."""
        self.pos_emb.copy_(self._table())


class ImagePatchEmbedding(_Embedding):
    """Raw pixels: non-overlapping ``patch x patch`` patches, flattened as (row, column, channel)."""

    def __init__(self, channels: int, dim: int, patch: int, grid: int):
        super().__init__(dim, partial(sincos_2d, grid, dim))
        self.patch, self.channels = patch, channels
        self.proj = nn.Linear(channels * patch * patch, dim, bias=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, height, width = image.shape
        rows, cols, p = height // self.patch, width // self.patch, self.patch
        patches = image.reshape(batch, channels, rows, p, cols, p).permute(0, 2, 4, 3, 5, 1)
        x = self.proj(patches.reshape(batch, rows * cols, p * p * channels))
        return x, resize_grid(self.pos_emb, rows, cols) + self.mod_emb


class TokenGridEmbedding(_Embedding):
    """Token ids of a tokenized image, ``(B, h, w)``, read row-major."""

    def __init__(self, vocab_size: int, dim: int, grid: int):
        super().__init__(dim, partial(sincos_2d, grid, dim))
        self.token_emb = nn.Embedding(vocab_size, dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, rows, cols = ids.shape
        x = self.token_emb(ids.reshape(batch, rows * cols))
        return x, resize_grid(self.pos_emb, rows, cols) + self.mod_emb


class SequenceEmbedding(_Embedding):
    """Token ids of a sequence, ``(B, L)``; positions count only the tokens that are not hidden."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__(dim, partial(sincos_1d, SEQUENCE_POSITIONS, dim))
        self.token_emb = nn.Embedding(vocab_size, dim, padding_idx=0)

    def forward(self, ids: torch.Tensor, hidden: torch.Tensor | None = None):
        x = self.token_emb(ids)
        if hidden is None:
            return x, self.pos_emb[:, : ids.shape[1]] + self.mod_emb
        positions = ((~hidden).long().cumsum(dim=1) - 1).clamp(min=0)
        pos = self.pos_emb[0][positions].masked_fill(hidden[..., None], 0.0)
        return x, pos + self.mod_emb


class TokenGridDecoderEmbedding(_Embedding):
    """Decoder side of a token modality: query positions and the (tied) output projection."""

    def __init__(self, vocab_size: int, dim: int, grid: int):
        super().__init__(dim, partial(sincos_2d, grid, dim))
        self.token_emb = nn.Embedding(vocab_size, dim)
        self.to_logits = nn.Linear(dim, vocab_size, bias=False)  # tied to token_emb by the model

    def query_emb(self, rows: int, cols: int) -> torch.Tensor:
        """``(1, rows * cols, D)``: position plus modality embedding of every cell of the grid."""
        return resize_grid(self.pos_emb, rows, cols) + self.mod_emb


class SequenceDecoderEmbedding(_Embedding):
    """Decoder side of a sequence modality (autoregressive; used by generation)."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__(dim, partial(sincos_1d, SEQUENCE_POSITIONS, dim))
        self.token_emb = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.to_logits = nn.Linear(dim, vocab_size, bias=False)  # tied to token_emb by the model
