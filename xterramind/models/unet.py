"""TerraTorch's ``UNetDecoder`` natively: the U-Net decoder of segmentation_models_pytorch (smp) 0.6 that
TerraTorch 1.2 wraps, written in plain PyTorch.

It exists so that TerraTorch fine-tuned checkpoints with a UNet decoder load and run without terratorch or smp
(neither installs beside this package's torch). The constructor takes the config's ``decoder_*`` arguments, the
state-dict names and shapes are TerraTorch's (``decoder.blocks.0.conv1.0.weight``, ...), and the arithmetic is the
same: per block, nearest upsampling, the skip concatenated after it, then two 3x3 convolution-norm-ReLU layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, OptionError

__all__ = ["UNetDecoder"]

_NORMS = {"batchnorm": nn.BatchNorm2d, "instancenorm": nn.InstanceNorm2d, "identity": None}
_ATTENTIONS = (None, "scse")
_SUPPORTED_NORMS = ("True (batchnorm), False (identity), 'batchnorm', 'identity', 'instancenorm', "
                    "or a dict {'type': one of those, **keyword arguments of its torch layer}")


def _norm_spec(use_batchnorm) -> tuple[str, dict[str, Any]]:
    """smp's ``use_norm`` as (type, keyword arguments of the norm layer)."""
    if isinstance(use_batchnorm, bool):
        spec = {"type": "batchnorm" if use_batchnorm else "identity"}
    elif isinstance(use_batchnorm, str):
        spec = {"type": use_batchnorm.lower()}  # smp lowercases a string, not a dict's type
    elif isinstance(use_batchnorm, dict) and "type" in use_batchnorm:
        spec = dict(use_batchnorm)
    else:
        raise OptionError(f"UNetDecoder: use_batchnorm={use_batchnorm!r} is not understood; "
                          f"supported: {_SUPPORTED_NORMS}")
    kind = spec.pop("type")
    if kind == "layernorm":
        # smp applies nn.LayerNorm(C) to a (B, C, H, W) map, i.e. over the width: it runs only where W equals C
        raise OptionError("UNetDecoder: use_batchnorm 'layernorm' is not supported (smp normalises over the map's "
                          f"width, which only runs where width equals channels); supported: {_SUPPORTED_NORMS}")
    if kind == "inplace":
        raise OptionError("UNetDecoder: use_batchnorm 'inplace' (InPlaceABN, a CUDA extension) is not supported; "
                          f"supported: {_SUPPORTED_NORMS}")
    if kind not in _NORMS:
        raise OptionError(f"UNetDecoder: use_batchnorm type {kind!r} is unknown; supported: {_SUPPORTED_NORMS}")
    return kind, spec


def _conv_norm_relu(cin: int, cout: int, kind: str, kwargs: dict[str, Any]) -> nn.Sequential:
    """smp's ``Conv2dReLU``: 3x3 convolution (biased only without a norm), norm, ReLU; indices 0, 1, 2."""
    try:
        norm = nn.Identity() if _NORMS[kind] is None else _NORMS[kind](cout, **kwargs)
    except TypeError as error:  # a dict with keyword arguments the torch layer does not take
        raise OptionError(f"UNetDecoder: use_batchnorm {kind!r} with {kwargs}: {error}") from None
    conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=kind == "identity")
    return nn.Sequential(conv, norm, nn.ReLU(inplace=True))


class _SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-and-excitation (smp's ``SCSEModule``, reduction 16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.cSE = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels // reduction, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())
        self.sSE = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


class _Attention(nn.Module):
    """smp's ``Attention`` wrapper, kept for its ``.attention`` level in the state-dict names."""

    def __init__(self, name: str | None, channels: int):
        super().__init__()
        self.attention = nn.Identity() if name is None else _SCSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class _Block(nn.Module):
    """One decoder stage: upsample to the skip's size, concatenate the skip, two conv-norm-ReLU layers."""

    def __init__(self, cin: int, skip: int, cout: int, norm: tuple[str, dict[str, Any]], attention: str | None):
        super().__init__()
        # created in smp's order so that a seeded construction draws the same initial weights
        self.conv1 = _conv_norm_relu(cin + skip, cout, *norm)
        self.attention1 = _Attention(attention, cin + skip)
        self.conv2 = _conv_norm_relu(cout, cout, *norm)
        self.attention2 = _Attention(attention, cout)

    def forward(self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:  # smp applies the first attention only after a concatenation
            x = self.attention1(torch.cat([x, skip], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class UNetDecoder(nn.Module):
    """TerraTorch's ``UNetDecoder``: a U-Net decoder on a feature pyramid, highest resolution first.

    ``embed_dim`` holds the features' channels, ``channels`` each block's output channels (as many as features),
    ``use_batchnorm`` the norm (smp's ``use_norm``: True, False, 'batchnorm', 'identity', 'instancenorm' or a
    ``{'type': ..., **kwargs}`` dict) and ``attention_type`` None or 'scse'. The blocks start at the deepest feature
    and each adds the next shallower one as a skip; the last block has no skip and keeps the resolution, so the
    output has ``channels[-1]`` channels at the first feature's resolution.

    Example:
        >>> decoder = UNetDecoder([48, 96, 192, 192], [512, 256, 128, 64])
        >>> features = [torch.randn(1, c, s, s) for c, s in zip([48, 96, 192, 192], [56, 28, 14, 7])]
        >>> decoder(features).shape
        torch.Size([1, 64, 56, 56])
    """

    def __init__(self, embed_dim: list[int], channels: list[int],
                 use_batchnorm: bool | str | dict[str, Any] = "batchnorm", attention_type: str | None = None):
        super().__init__()
        if len(embed_dim) != len(channels) or not channels:
            raise OptionError(f"UNetDecoder: channels {list(channels)} must have one entry per feature, like "
                              f"embed_dim {list(embed_dim)}")
        if attention_type not in _ATTENTIONS:
            raise OptionError(f"UNetDecoder: attention_type {attention_type!r} is not supported; "
                              "supported: None, 'scse'")
        norm = _norm_spec(use_batchnorm)
        # TerraTorch prepends a copy of the first feature, which smp drops as the full-resolution skip: so the
        # blocks take the deepest feature, then the shallower ones as skips, and the last block has none
        ins = [embed_dim[-1], *channels[:-1]]
        skips = [*embed_dim[-2::-1], 0]
        self.decoder = nn.Module()  # a plain container, for TerraTorch's ``decoder.`` prefix (smp's UnetDecoder)
        self.decoder.blocks = nn.ModuleList(_Block(i, s, o, norm, attention_type)
                                            for i, s, o in zip(ins, skips, channels, strict=True))
        self.out_channels = channels[-1]
        for module in self.modules():  # smp's initialize_decoder (its norm initialisation is torch's default)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        blocks = self.decoder.blocks
        if len(features) != len(blocks):
            raise InputError(f"UNetDecoder: expected {len(blocks)} features, got {len(features)}")
        # each block upsamples to the next shallower feature's size; the last to the first feature's size again
        # (its duplicate's), which is a no-op: it only refines
        sizes = [tuple(f.shape[-2:]) for f in features[-2::-1]] + [tuple(features[0].shape[-2:])]
        x = features[-1]
        for block, size, skip in zip(blocks, sizes, [*features[-2::-1], None], strict=True):
            x = block(x, size, skip)
        return x
