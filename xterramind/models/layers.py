"""Transformer building blocks with TerraMind's parameter names, so official state dicts load as-is."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm whose bias, when not learned, is still a (zero) buffer in the state dict.

    TerraMind's backbone norms have ``bias=False`` but its checkpoints carry ``*.bias`` keys.
    """

    def __init__(self, dim: int, eps: float = 1e-6, learn_bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        if learn_bias:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_buffer("bias", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, N, H*d)`` to ``(B, H, N, d)``."""
    batch, length, dim = x.shape
    return x.view(batch, length, num_heads, dim // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def _attend(q, k, v, hidden_keys: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention; ``hidden_keys`` is ``(B, M)``, True where a key must be ignored."""
    mask = None if hidden_keys is None else ~hidden_keys[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(nn.Module):
    """Self-attention with one fused ``qkv`` projection (q, k, v are its consecutive thirds)."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, hidden_keys: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(_merge_heads(_attend(qkv[0], qkv[1], qkv[2], hidden_keys)))


class CrossAttention(nn.Module):
    """Attention from queries ``x`` to a context, with ``q`` and fused ``kv`` (k first) projections."""

    def __init__(self, dim: int, num_heads: int, bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, hidden_keys: torch.Tensor | None = None):
        q = _heads(self.q(x), self.num_heads)
        k, v = (_heads(part, self.num_heads) for part in self.kv(context).chunk(2, dim=-1))
        return self.proj(_merge_heads(_attend(q, k, v, hidden_keys)))


class Mlp(nn.Module):
    """``fc2(act(fc1 x))``, GELU by default: the tiny and small variants, and the tokenizers' ViTs."""

    def __init__(self, dim: int, hidden: int, bias: bool, activation=F.gelu):
        super().__init__()
        self.activation = activation
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class SwiGLU(nn.Module):
    """``fc2(silu(fc1 x) * fc3 x)``: the base and large variants."""

    def __init__(self, dim: int, hidden: int, bias: bool):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.fc3 = nn.Linear(dim, hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)) * self.fc3(x))


def make_mlp(dim: int, hidden: int, swiglu: bool, bias: bool) -> nn.Module:
    return SwiGLU(dim, hidden, bias) if swiglu else Mlp(dim, hidden, bias)


class Block(nn.Module):
    """Pre-norm encoder block: ``x += attn(norm1 x)``; ``x += mlp(norm2 x)``."""

    def __init__(self, dim: int, num_heads: int, hidden: int, swiglu: bool, bias: bool, norm_bias: bool = False):
        super().__init__()
        self.norm1 = LayerNorm(dim, learn_bias=norm_bias)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, learn_bias=norm_bias)
        self.mlp = make_mlp(dim, hidden, swiglu, bias)

    def forward(self, x: torch.Tensor, hidden_keys: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hidden_keys)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Decoder block: self-attention, cross-attention to the encoder context, then the MLP."""

    def __init__(self, dim: int, num_heads: int, hidden: int, swiglu: bool, bias: bool):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, bias)
        self.query_norm = LayerNorm(dim)
        self.context_norm = LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim)
        self.mlp = make_mlp(dim, hidden, swiglu, bias)

    def forward(self, x, context, hidden_context=None, hidden_queries=None):
        x = x + self.self_attn(self.norm1(x), hidden_queries)
        x = x + self.cross_attn(self.query_norm(x), self.context_norm(context), hidden_context)
        return x + self.mlp(self.norm2(x))
