"""The tokenizers' ViT-B/16 encoder and decoder (pre-norm blocks, a Tanh post-MLP, learned-size tables)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import Block, LayerNorm, Mlp
from ..posemb import sincos_2d


def _position_table(grid: int, dim: int) -> torch.Tensor:
    """``(1, dim, grid, grid)``: the 2-D sine-cosine table in the layout the tokenizer files store."""
    return sincos_2d(grid, dim).reshape(1, grid, grid, dim).permute(0, 3, 1, 2).contiguous()


class _ViT(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, grid: int):
        super().__init__()
        self.pos_emb = nn.Parameter(_position_table(grid, dim), requires_grad=False)
        self.blocks = nn.Sequential(*(Block(dim, heads, 4 * dim, swiglu=False, bias=True, norm_bias=True) for _ in range(depth)))
        self.norm_mlp = LayerNorm(dim, learn_bias=True)
        self.post_mlp = Mlp(dim, 4 * dim, bias=True, activation=torch.tanh)

    def reset_pos_emb(self) -> None:
        with torch.no_grad():
            self.pos_emb.copy_(_position_table(self.pos_emb.shape[-1], self.pos_emb.shape[1]))

    def _transform(self, tokens: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """``(B, rows * cols, D)`` + bicubic-resized positions -> blocks -> the post-MLP residual (in fp32)."""
        pos = F.interpolate(self.pos_emb, size=(rows, cols), mode="bicubic", align_corners=False)
        x = self.blocks(tokens + pos.flatten(2).transpose(1, 2))
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            return x + self.post_mlp(self.norm_mlp(x))


class ViTEncoder(_ViT):
    """Pixels ``(B, C, H, W)`` (or class ids ``(B, H, W)``, one-hot encoded) -> ``(B, D, H/p, W/p)``."""

    def __init__(self, channels: int, dim: int, depth: int, heads: int, patch: int, grid: int):
        super().__init__(dim, depth, heads, grid)
        self.channels = channels
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3 or x.shape[1] != self.channels:  # class ids: one-hot, as the LULC tokenizer expects
            ids = x if x.ndim == 3 else x[:, 0]
            x = F.one_hot(ids.long(), self.channels).permute(0, 3, 1, 2).float()
        x = self.proj(x)
        batch, dim, rows, cols = x.shape
        x = self._transform(x.flatten(2).transpose(1, 2), rows, cols)
        return x.transpose(1, 2).reshape(batch, dim, rows, cols)


class ViTDecoder(_ViT):
    """Latents ``(B, D, h, w)`` -> pixels ``(B, C, h*p, w*p)``; each token's output is (channel, row, col) ordered."""

    def __init__(self, channels: int, dim: int, depth: int, heads: int, patch: int, grid: int):
        super().__init__(dim, depth, heads, grid)
        self.channels, self.patch = channels, patch
        self.out_proj = nn.Linear(dim, channels * patch * patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, rows, cols = x.shape
        x = self.out_proj(self._transform(x.flatten(2).transpose(1, 2), rows, cols))
        p = self.patch
        x = x.reshape(batch, rows, cols, self.channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(batch, self.channels, rows * p, cols * p)
