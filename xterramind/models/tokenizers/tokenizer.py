"""A TerraMind tokenizer: pixels -> FSQ codes and tokens, and tokens -> pixels (or class logits).

State-dict compatible with ``TerraMind_Tokenizer_{S2L2A,S1GRD,S1RTC,DEM,NDVI,LULC}.pt``. Inputs are
standardized with the model's statistics (LULC takes class ids 0..9 or a one-hot map).
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import TokenizerConfig
from ..weights import empty_module
from . import ddim
from .fsq import FSQ
from .unet import PatchedUNet
from .vit import ViTDecoder, ViTEncoder

LATENT = 5  # FSQ channels of every TerraMind tokenizer


class Tokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        grid = config.image_size // config.patch
        self.encoder = ViTEncoder(config.channels, config.dim, config.depth, config.heads, config.patch, grid)
        self.quant_proj = nn.Conv2d(config.dim, LATENT, 1)
        self.quantizer = FSQ(config.levels)
        if config.diffusion:
            self.decoder = PatchedUNet(config.channels, LATENT, config.unet_patch, config.unet_channels,
                                       config.unet_mult, config.unet_res_blocks, config.unet_attention)
        else:
            self.post_quant_proj = nn.Conv2d(LATENT, config.dim, 1)
            self.decoder = ViTDecoder(config.channels, config.dim, config.depth, config.heads, config.patch, grid)

    @classmethod
    def empty(cls, config: TokenizerConfig) -> Tokenizer:
        """A tokenizer with allocated but unset weights, to be filled from a file or seeds."""
        return empty_module(lambda: cls(config))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardized ``(B, C, H, W)`` (LULC: class ids ``(B, H, W)``) -> codes ``(B, 5, h, w)`` and
        int32 tokens ``(B, h, w)``, one per ``patch`` x ``patch`` pixels."""
        return self.quantizer.quantize(self.latent(x))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latent before quantization, ``(B, 5, h, w)``."""
        return self.quant_proj(self.encoder(x))

    def codes(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.quantizer.codes(tokens)

    def decode_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """LULC: tokens ``(B, h, w)`` -> class logits ``(B, 10, h*16, w*16)``."""
        return self.decoder(self.post_quant_proj(self.codes(tokens)))

    def decode_diffusion(self, tokens: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
        """Images: tokens ``(B, h, w)`` and initial noise ``(B, C, h*16, w*16)`` -> standardized pixels in
        [-1, 1] after ``steps`` DDIM steps."""
        codes = self.codes(tokens)
        return ddim.sample(lambda x, t: self.decoder(x, torch.tensor(t), codes), noise, steps)
