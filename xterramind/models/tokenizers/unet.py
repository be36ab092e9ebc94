"""The diffusion decoder of TerraMind's image tokenizers: an ADM-style UNet over 4 x 4 pixel patches,
conditioned on the FSQ codes by concatenation. Module names follow the official tokenizer files."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm over 32 groups, computed in fp32 whatever the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """``[cos(t f), sin(t f)]`` with ``f = 10000^(-k / (dim/2))``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps[:, None].float() * frequencies[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        # index 2 held a dropout in training; the Identity keeps the official key of the last conv (out_layers.3)
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Identity(), nn.Conv2d(out_channels, out_channels, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb).to(x.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        flat = x.reshape(batch, channels, -1)
        q, k, v = self.qkv(self.norm(flat)).transpose(1, 2).chunk(3, dim=-1)  # (B, L, C) each
        attended = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return (flat + self.proj_out(attended.transpose(1, 2))).reshape(batch, channels, *spatial)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.Sequential):
    """A run of layers; residual blocks also receive the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class PatchedUNet(nn.Module):
    """Predicts the clean image from a noisy one, a timestep and the FSQ codes.

    The image is cut into ``patch`` x ``patch`` patches stacked as channels (channel-major), the codes
    are nearest-upsampled to that grid and concatenated, and a UNet with ``model_channels`` x ``mult``
    channels per level, ``res_blocks`` residual blocks per level and attention at the given downsampling
    rates runs over it.
    """

    def __init__(self, channels: int, code_channels: int, patch: int, model_channels: int,
                 mult: tuple[int, ...], res_blocks: int, attention_at: tuple[int, ...]):
        super().__init__()
        self.channels, self.patch, self.model_channels = channels, patch, model_channels
        emb = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([Stage(nn.Conv2d(channels * patch * patch + code_channels, model_channels, 3, padding=1))])
        skips, ch, rate = [model_channels], model_channels, 1
        for level, factor in enumerate(mult):
            for _ in range(res_blocks):
                layers = [ResBlock(ch, emb, factor * model_channels)]
                ch = factor * model_channels
                if rate in attention_at:
                    layers.append(AttentionBlock(ch))
                self.input_blocks.append(Stage(*layers))
                skips.append(ch)
            if level < len(mult) - 1:
                self.input_blocks.append(Stage(Downsample(ch)))
                skips.append(ch)
                rate *= 2
        self.middle_block = Stage(ResBlock(ch, emb, ch), AttentionBlock(ch), ResBlock(ch, emb, ch))
        self.output_blocks = nn.ModuleList()
        for level, factor in reversed(list(enumerate(mult))):
            for i in range(res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, factor * model_channels)]
                ch = factor * model_channels
                if rate in attention_at:
                    layers.append(AttentionBlock(ch))
                if level and i == res_blocks:
                    layers.append(Upsample(ch))
                    rate //= 2
                self.output_blocks.append(Stage(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(model_channels, channels * patch * patch, 3, padding=1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = sample.shape
        p, rows, cols = self.patch, height // self.patch, width // self.patch
        x = sample.reshape(batch, channels, rows, p, cols, p).permute(0, 1, 3, 5, 2, 4).reshape(batch, -1, rows, cols)
        x = torch.cat([x, F.interpolate(codes.to(x.dtype), (rows, cols), mode="nearest")], dim=1)
        emb = self.time_embed(timestep_embedding(timestep.reshape(-1).to(sample.device), self.model_channels))
        skips = []
        for block in self.input_blocks:
            x = block(x, emb)
            skips.append(x)
        x = self.middle_block(x, emb)
        for block in self.output_blocks:
            x = block(torch.cat([x, skips.pop()], dim=1), emb)
        x = self.out(x)
        x = x.reshape(batch, channels, p, p, rows, cols).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(batch, channels, height, width)
