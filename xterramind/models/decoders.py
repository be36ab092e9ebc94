"""The decoders of TerraTorch's encoder-decoder models, natively, and the one place they are looked up by name.

Each has TerraTorch's name, constructor arguments (the config's ``decoder_*``), ``out_channels`` and state-dict names,
so a fine-tuned checkpoint loads as it is. A decoder takes the necks' list of features and gives one feature map,
which the head turns into the outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .necks import check_arguments
from .unet import UNetDecoder
from .upernet import UperNetDecoder


class Norm2d(nn.Module):
    """Layer norm over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int):
        super().__init__()
        self.ln = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


class FCNDecoder(nn.Module):
    """``num_convs`` x2 upscales of one feature (``in_index``): transposed convolution, 3x3 convolution, norm, GELU."""

    def __init__(self, embed_dim: list[int], channels: int = 256, num_convs: int = 4, in_index: int = -1):
        super().__init__()
        if num_convs < 1:
            raise ConfigError(f"FCNDecoder: decoder_num_convs must be at least 1, got {num_convs}")
        self.in_index, self.out_channels = in_index, channels
        widths = [embed_dim[in_index], *[channels] * num_convs]
        self.convs = nn.Sequential(*(nn.Sequential(nn.ConvTranspose2d(a, channels, kernel_size=2, stride=2),
                                                   nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                                                   Norm2d(channels), nn.GELU())
                                     for a in widths[:-1]))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.convs(features[self.in_index])


class IdentityDecoder(nn.Module):
    """One of the features as it is (``out_index``), for a head to take."""

    def __init__(self, embed_dim: list[int], out_index: int = -1):
        super().__init__()
        self.out_index, self.out_channels = out_index, embed_dim[out_index]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[self.out_index]


class LinearDecoder(nn.Module):
    """One feature upsampled by a transposed convolution of kernel and stride ``upsampling_size`` to ``num_classes``
    channels (``decoder_num_classes``); TerraTorch 1.2's factory puts the head after it, as after any decoder."""

    def __init__(self, embed_dim: list[int], num_classes: int, upsampling_size: int, in_index: int = -1):
        super().__init__()
        self.in_index, self.out_channels = in_index, num_classes
        self.conv = nn.ConvTranspose2d(embed_dim[in_index], num_classes, kernel_size=upsampling_size,
                                       stride=upsampling_size)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(features[self.in_index])


DECODERS = {decoder.__name__: decoder for decoder in (UNetDecoder, UperNetDecoder, FCNDecoder, IdentityDecoder,
                                                      LinearDecoder)}


def build_decoder(name: str, channels: list[int], arguments: dict) -> nn.Module:
    """The decoder ``name`` on features of ``channels`` with the config's ``decoder_*`` ``arguments``.

    Example:
        >>> build_decoder("FCNDecoder", [192], {"channels": 64}).out_channels
        64
    """
    decoder = DECODERS.get(name)
    if decoder is None:
        raise ConfigError(f"decoder {name!r} is not supported; supported decoders: {sorted(DECODERS)}")
    check_arguments(f"decoder {name}", decoder, arguments, skip=("embed_dim",), prefix="decoder_")
    return decoder(list(channels), **arguments)
