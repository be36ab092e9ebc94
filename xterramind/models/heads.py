"""The heads of TerraTorch's pixel-wise models, natively: the last layers, from a decoder's features to class
scores (segmentation) or values (pixel-wise regression), with TerraTorch's arguments and state-dict names."""

from __future__ import annotations

import itertools

from torch import nn

from ..errors import ConfigError

ACTIVATIONS = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Softplus": nn.Softplus, "GELU": nn.GELU,
               "SiLU": nn.SiLU, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU, "Identity": nn.Identity}


class SegmentationHead(nn.Module):
    """Optional 3x3 convolutions with ReLU (``channel_list``), dropout, then a 1x1 convolution to ``num_classes``."""

    def __init__(self, in_channels: int, num_classes: int, channel_list: list[int] | None = None, dropout: float = 0):
        super().__init__()
        widths = [in_channels, *(channel_list or [])]
        convolutions = nn.Sequential(*(nn.Sequential(nn.Conv2d(a, b, kernel_size=3, padding=1), nn.ReLU())
                                       for a, b in itertools.pairwise(widths)))
        self.head = nn.Sequential(convolutions if channel_list is not None else nn.Identity(),
                                  nn.Dropout(dropout) if dropout else nn.Identity(),
                                  nn.Conv2d(widths[-1], num_classes, kernel_size=1))

    def forward(self, x):
        return self.head(x)


class PixelShuffleUpscale(nn.Module):
    """Twice the size: a 3x3 convolution to four times the channels, pixel shuffle, batch norm, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, kernel_size=3, stride=1, padding=1)
        self.upscale = nn.PixelShuffle(2)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.upscale(self.conv(x))))


class RegressionHead(nn.Module):
    """Optional learned x2 upscales, optional 3x3 convolution blocks (``channel_list``; with batch norm as
    TerraTorch builds them), dropout, a 1x1 convolution to ``num_outputs``, then ``final_act``."""

    def __init__(self, in_channels: int, num_outputs: int = 1, final_act: str | None = None,
                 learned_upscale_layers: int = 0, channel_list: list[int] | None = None, batch_norm: bool = True,
                 dropout: float = 0):
        super().__init__()
        self.final_act = _activation(final_act)
        layers = []
        if learned_upscale_layers:
            layers.append(nn.Sequential(*(PixelShuffleUpscale(in_channels) for _ in range(learned_upscale_layers))))
        if channel_list is not None:
            widths = [in_channels, *channel_list]
            layers.append(nn.Sequential(*(nn.Sequential(nn.Conv2d(a, b, kernel_size=3, padding=1, bias=False),
                                                        nn.BatchNorm2d(b), nn.ReLU())
                                          for a, b in itertools.pairwise(widths))))
            in_channels = widths[-1]
        self.head = nn.Sequential(*layers, nn.Dropout2d(dropout), nn.Conv2d(in_channels, num_outputs, kernel_size=1))

    def forward(self, x):
        return self.final_act(self.head(x))


def _activation(name: str | None) -> nn.Module:
    """A final activation by its class name (``"torch.nn.ReLU"`` or ``"ReLU"``), from torch.nn only: a config
    never names code to import."""
    if not name:
        return nn.Identity()
    short = str(name).rsplit(".", 1)[-1]
    if short not in ACTIVATIONS or (str(name).count(".") and not str(name).startswith(("torch.nn.", "nn."))):
        raise ConfigError(f"head_final_act {name!r} is not supported; supported: {sorted(ACTIVATIONS)} "
                          "(as torch.nn.<name>)")
    return ACTIVATIONS[short]()


HEADS = {"segmentation": SegmentationHead, "regression": RegressionHead}
