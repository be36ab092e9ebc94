"""TerraTorch's ``UperNetDecoder`` natively: the UPerNet head (a pyramid pooling module on the deepest feature and a
feature pyramid network over the rest) that TerraTorch 1.2 adapted from MMSegmentation, written in plain PyTorch.

It exists so that TerraTorch fine-tuned checkpoints with a UperNet decoder load and run without terratorch. The
constructor takes the config's ``decoder_*`` arguments, the state-dict names and shapes are TerraTorch's
(``decoder.psp_modules.0.1.conv.weight``, ``decoder.lateral_convs.0.norm.running_mean``, ``decoder.fpn_bottleneck``,
...), and the arithmetic is the same: every convolution is bias-free and followed by batch norm and ReLU, and every
resize is bilinear with the configured ``align_corners``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError

__all__ = ["UperNetDecoder"]


class _ConvNormReLU(nn.Module):
    """TerraTorch's ``ConvModule``: a bias-free convolution, batch norm, ReLU (``.conv``, ``.norm``, ``.act``)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _PyramidPooling(nn.ModuleList):
    """PSPNet's pooling pyramid: per scale, adaptive average pooling and a 1x1 conv-norm-ReLU, resized back.

    A ``ModuleList`` of ``(pool, conv)`` pairs, so that the names are TerraTorch's ``psp_modules.<i>.1.<...>``.
    """

    def __init__(self, pool_scales: Sequence, cin: int, cout: int, align_corners: bool):
        super().__init__(nn.Sequential(nn.AdaptiveAvgPool2d(scale), _ConvNormReLU(cin, cout, 1))
                         for scale in pool_scales)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[2:]
        return [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=self.align_corners)
                for branch in self]


def _check_pool_scale(scale) -> None:
    """A ``ConfigError`` unless ``scale`` is what ``AdaptiveAvgPool2d`` pools to: a size or an (h, w) pair."""
    def positive(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if not (positive(scale) or (isinstance(scale, Sequence) and len(scale) == 2 and all(map(positive, scale)))):
        raise ConfigError(f"UperNetDecoder: decoder_pool_scales entry {scale!r} is not supported; supported: "
                          "positive integers or [height, width] pairs of them, e.g. [1, 2, 3, 6]")


class UperNetDecoder(nn.Module):
    """TerraTorch's ``UperNetDecoder``: UPerNet on a feature pyramid, highest resolution first.

    ``embed_dim`` holds the features' channels, ``channels`` the decoder's width (and its output channels),
    ``pool_scales`` the pooled sizes of the pyramid pooling module on the deepest feature, and ``align_corners``
    that of every bilinear resize. The pooled feature is added top-down into 1x1 projections of the shallower ones,
    each level is refined by a 3x3 convolution, and all are resized to the first feature's size, concatenated and
    fused by a last 3x3 convolution: the output has ``channels`` channels at the first feature's resolution.

    ``scale_modules`` (deprecated in TerraTorch for the ``LearnedInterpolateToPyramidal`` neck, which it equals)
    first turns four same-sized ViT maps into a pyramid inside the decoder: x4 up, x2 up, as they are, /2 down.

    Example:
        >>> decoder = UperNetDecoder([48, 96, 192, 192], channels=64).eval()  # in training, batch norm needs B > 1
        >>> features = [torch.randn(1, c, s, s) for c, s in zip([48, 96, 192, 192], [56, 28, 14, 7])]
        >>> decoder(features).shape
        torch.Size([1, 64, 56, 56])
    """

    def __init__(self, embed_dim: list[int], pool_scales: tuple[int] = (1, 2, 3, 6), channels: int = 256,
                 align_corners: bool = True, scale_modules: bool = False):
        super().__init__()
        embed_dim = list(embed_dim)
        if not embed_dim:
            raise ConfigError("UperNetDecoder: it needs at least one feature; embed_dim is empty")
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise ConfigError(f"UperNetDecoder: decoder_channels must be a positive integer, got {channels!r}")
        if not isinstance(pool_scales, Sequence) or isinstance(pool_scales, str):
            raise ConfigError(f"UperNetDecoder: decoder_pool_scales must be a list of pooled sizes such as "
                              f"[1, 2, 3, 6], got {pool_scales!r}")
        for scale in pool_scales:
            _check_pool_scale(scale)
        if not isinstance(align_corners, bool):
            raise ConfigError(f"UperNetDecoder: decoder_align_corners must be true or false, got {align_corners!r}")
        if not isinstance(scale_modules, bool):
            raise ConfigError(f"UperNetDecoder: decoder_scale_modules must be true or false, got {scale_modules!r}")

        self.scale_modules = scale_modules
        if scale_modules:
            # TerraTorch reads exactly four features here (and would fail on fewer, ignore more): say so up front
            if len(embed_dim) != 4 or embed_dim[0] < 4 or embed_dim[1] < 2:
                raise ConfigError(f"UperNetDecoder: decoder_scale_modules needs exactly 4 features of at least 4 and "
                                  f"2 channels for the first two, got embed_dim {embed_dim}")
            first, second = embed_dim[0], embed_dim[1]
            self.fpn1 = nn.Sequential(nn.ConvTranspose2d(first, first // 2, 2, 2), nn.BatchNorm2d(first // 2),
                                      nn.GELU(), nn.ConvTranspose2d(first // 2, first // 4, 2, 2))
            self.fpn2 = nn.Sequential(nn.ConvTranspose2d(second, second // 2, 2, 2))
            self.fpn3 = nn.Sequential(nn.Identity())
            self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))
            embed_dim = [first // 4, second // 2, embed_dim[2], embed_dim[3]]

        self.embed_dim = embed_dim  # after the scale modules, as TerraTorch keeps it
        self.channels = self.out_channels = channels
        self.align_corners = align_corners
        # created (and registered) in TerraTorch's order, so a seeded construction draws the same initial weights
        self.psp_modules = _PyramidPooling(pool_scales, embed_dim[-1], channels, align_corners)
        self.bottleneck = _ConvNormReLU(embed_dim[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for width in embed_dim[:-1]:  # the deepest feature goes through the pooling pyramid instead
            self.lateral_convs.append(_ConvNormReLU(width, channels, 1))
            self.fpn_convs.append(_ConvNormReLU(channels, channels, 3, padding=1))
        self.fpn_bottleneck = _ConvNormReLU(len(embed_dim) * channels, channels, 3, padding=1)

    def _resize(self, x: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        expected = 4 if self.scale_modules else len(self.embed_dim)
        if len(features) != expected:
            raise InputError(f"UperNetDecoder: expected {expected} features, got {len(features)}")
        if self.scale_modules:
            features = [self.fpn1(features[0]), self.fpn2(features[1]), self.fpn3(features[2]),
                        self.fpn4(features[3])]
        deepest = features[-1]
        pooled = self.bottleneck(torch.cat([deepest, *self.psp_modules(deepest)], dim=1))
        levels = [conv(feature) for conv, feature in zip(self.lateral_convs, features, strict=False)] + [pooled]
        # top-down: each level gains the (already summed) coarser one above it, resized to its size
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + self._resize(levels[i], levels[i - 1].shape[2:])
        outs = [conv(level) for conv, level in zip(self.fpn_convs, levels, strict=False)] + [levels[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0], *(self._resize(out, size) for out in outs[1:])]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
