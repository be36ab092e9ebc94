"""The necks of TerraTorch's encoder-decoder models, natively: what turns TerraMind's per-layer token sequences into
the feature maps a decoder takes.

Each neck has TerraTorch's name, arguments and state-dict names (``neck.<index>.<...>``, as TerraTorch's
``NeckSequential``), so a fine-tuned checkpoint loads as it is. A neck maps a list of features to a list of features
and says how it changes their channel counts (``channels``), which the decoder after it is built from.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError


class Neck(nn.Module):
    """One step between the encoder and the decoder."""

    def channels(self, channels: list[int]) -> list[int]:
        """The channel counts of the features it gives, from those it takes."""
        return channels


class SelectIndices(Neck):
    """The encoder layers the decoder uses, e.g. ``[2, 5, 8, 11]``."""

    def __init__(self, channel_list: list[int], indices: list[int]):
        super().__init__()
        self.indices = list(indices)

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [features[i] for i in self.indices]

    def channels(self, channels: list[int]) -> list[int]:
        return [channels[i] for i in self.indices]


class PermuteDims(Neck):
    """Each feature's dimensions reordered (``tensor.permute(*new_order)``)."""

    def __init__(self, channel_list: list[int], new_order: list[int]):
        super().__init__()
        self.new_order = list(new_order)

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [feature.permute(*self.new_order).contiguous() for feature in features]


class ReshapeTokensToImage(Neck):
    """Token sequences ``(B, N, D)`` as maps ``(B, D, h, w)`` (maps pass as they are).

    As TerraTorch: with ``remove_cls_token`` the first token is dropped unless the rest fit no grid (TerraMind has
    no class token: on its square tiles nothing is dropped); the grid's height is ``h``, else the square root of
    the count, else from the image's size.
    """

    def __init__(self, channel_list: list[int], remove_cls_token: bool = True, effective_time_dim: int = 1,
                 h: int | None = None, temporal_inputs: bool = False):
        super().__init__()
        if effective_time_dim != 1 or temporal_inputs:
            raise ConfigError("ReshapeTokensToImage: TerraMind takes one time step; effective_time_dim must be 1 and "
                              "temporal_inputs false")
        self.remove_cls_token, self.h = remove_cls_token, h

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [self._image(x, image_size, self.remove_cls_token) if x.dim() == 3 else x for x in features]

    def _image(self, x: torch.Tensor, image_size, drop: bool) -> torch.Tensor:
        tokens = x[:, 1:] if drop else x
        count = tokens.shape[1]
        rows = self.h or math.sqrt(count)
        if rows != int(rows):  # not a square grid: its height from the image's, at the tokens' patch size
            patch = math.sqrt(image_size[0] * image_size[1] / count)
            if patch % 1:
                if drop:  # no class token after all
                    return self._image(x, image_size, False)
                raise InputError(f"ReshapeTokensToImage: {count} tokens do not tile an image of {tuple(image_size)}")
            rows = image_size[0] // patch
        rows = int(rows)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, count // rows)


class InterpolateToPyramidal(Neck):
    """Features scaled up so that each is ``scale_factor`` times the size of the next (the last by ``scale_factor``)."""

    def __init__(self, channel_list: list[int], scale_factor: int = 2, mode: str = "nearest"):
        super().__init__()
        self.scale_factor, self.mode = scale_factor, mode

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        count = len(features)
        return [F.interpolate(x, scale_factor=self.scale_factor ** (count - i), mode=self.mode)
                for i, x in enumerate(features)]


class MaxpoolToPyramidal(Neck):
    """Features pooled down: the first as it is, each next one by another factor of ``kernel_size``."""

    def __init__(self, channel_list: list[int], kernel_size: int = 2):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [x.clone() if i == 0 else F.max_pool2d(x, kernel_size=self.kernel_size ** i)
                for i, x in enumerate(features)]


class LearnedInterpolateToPyramidal(Neck):
    """Four maps of one size made a pyramid with learned layers: x4 up, x2 up, as they are, /2 down."""

    def __init__(self, channel_list: list[int]):
        super().__init__()
        if len(channel_list) != 4:
            raise ConfigError(f"LearnedInterpolateToPyramidal takes exactly 4 features, got {len(channel_list)}: "
                              "select 4 encoder layers first, e.g. SelectIndices with indices [2, 5, 8, 11]")
        first, second = channel_list[0], channel_list[1]
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(first, first // 2, 2, 2), nn.BatchNorm2d(first // 2), nn.GELU(),
                                  nn.ConvTranspose2d(first // 2, first // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(second, second // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [self.fpn1(features[0]), self.fpn2(features[1]), self.fpn3(features[2]), self.fpn4(features[3])]

    def channels(self, channels: list[int]) -> list[int]:
        return [channels[0] // 4, channels[1] // 2, channels[2], channels[3]]


class AddBottleneckLayer(Neck):
    """One more feature: the last one with half its channels (a 1x1 convolution)."""

    def __init__(self, channel_list: list[int]):
        super().__init__()
        self.bottleneck = nn.Conv2d(channel_list[-1], channel_list[-1] // 2, kernel_size=1)

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        return [*features, self.bottleneck(features[-1])]

    def channels(self, channels: list[int]) -> list[int]:
        return [*channels, channels[-1] // 2]


NECKS = {neck.__name__: neck for neck in (SelectIndices, ReshapeTokensToImage, LearnedInterpolateToPyramidal,
                                          InterpolateToPyramidal, MaxpoolToPyramidal, PermuteDims, AddBottleneckLayer)}


class Necks(nn.Sequential):
    """The necks in order, each given the image size (state-dict names ``<index>.<...>``, as TerraTorch's)."""

    def forward(self, features: list[torch.Tensor], image_size=None) -> list[torch.Tensor]:
        for neck in self:
            features = neck(features, image_size)
        return features


def build_necks(specs: list[dict], channels: list[int]) -> tuple[Necks, list[int]]:
    """TerraTorch's ``necks`` list (``[{"name": "SelectIndices", "indices": [2, 5, 8, 11]}, ...]``) built on features
    of ``channels``: the necks and the channel counts they leave for the decoder.

    Example:
        >>> necks, channels = build_necks([{"name": "SelectIndices", "indices": [-1]}], [192] * 12)
        >>> channels
        [192]
    """
    built = []
    for spec in specs:
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"each neck is a mapping with a name, e.g. {{name: SelectIndices, indices: [-1]}}; got {spec!r}")
        arguments = {k: v for k, v in spec.items() if k != "name"}
        neck = NECKS.get(spec["name"])
        if neck is None:
            raise ConfigError(f"neck {spec['name']!r} is not supported; supported necks: {sorted(NECKS)}")
        check_arguments(f"neck {spec['name']}", neck, arguments, skip=("channel_list",))
        built.append(neck(channels, **arguments))
        channels = built[-1].channels(channels)
    return Necks(*built), channels


def check_arguments(what: str, cls, arguments: dict, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """A ``ConfigError`` naming the arguments ``cls`` does not take (a config written for another version, or a typo),
    in the config's words: ``prefix`` + name (``decoder_channels``)."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = {name: p for name, p in inspect.signature(cls).parameters.items() if p.kind in named}
    takes = [prefix + name for name in parameters if name not in skip]
    unknown = sorted(prefix + name for name in set(arguments) - set(parameters) - set(skip))
    if unknown:
        raise ConfigError(f"{what} does not take {unknown}; it takes {takes}")
    missing = [prefix + name for name, p in parameters.items()
               if name not in skip and p.default is inspect.Parameter.empty and name not in arguments]
    if missing:
        raise ConfigError(f"{what} needs {missing}")
