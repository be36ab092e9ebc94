"""Finite scalar quantization, TerraMind's sigmoid variant: codes in [0, 1], one int32 token per cell."""

from __future__ import annotations

import math

import torch
from torch import nn


class FSQ(nn.Module):
    """Each of the ``len(levels)`` latent channels is squashed by a sigmoid and rounded to ``L_d`` levels.

    ``n_d = round(sigmoid(z_d) * (L_d - 1))``, ``code_d = n_d / (L_d - 1)`` and the token is
    ``sum_d n_d * basis_d`` with ``basis = cumprod([1, L_0, L_1, ...])``. It has no weights.
    """

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        self.level_counts = tuple(levels)
        self.bases = tuple(math.prod(levels[:d]) for d in range(len(levels)))

    @property
    def vocab_size(self) -> int:
        return math.prod(self.level_counts)

    def _column(self, values, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, device=like.device)[:, None, None]

    def quantize(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, D, h, w)`` latents -> codes ``(B, D, h, w)`` in [0, 1] and tokens ``(B, h, w)`` int32."""
        steps = self._column([level - 1 for level in self.level_counts], latent)
        number = torch.round(torch.sigmoid(latent) * steps)
        tokens = (number * self._column(self.bases, latent)).sum(dim=1).to(torch.int32)
        return number / steps, tokens

    def codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, h, w)`` -> codes ``(B, D, h, w)``."""
        number = (tokens.long()[:, None] // self._column(self.bases, tokens)) % self._column(self.level_counts, tokens)
        return number / self._column([level - 1 for level in self.level_counts], tokens)
