"""A TerraMind model fine-tuned with TerraTorch's ``EncoderDecoderFactory``, natively: backbone, necks, decoder,
head and the final bilinear rescale, with TerraTorch's state-dict names (a checkpoint's ``state_dict`` under its
``model.`` prefix loads as it is) and its arithmetic (``PixelWiseModel.forward``).

The backbone is TerraMind's encoder holding only the embeddings of the inputs it was fine-tuned on (a patch
embedding of fewer channels where it was fine-tuned on some bands). A Thinking-in-Modalities backbone
(``terramind_v1_*_tim``) also holds the frozen encoder-decoder that first generates its TiM token grids
(``sampler.model``); with chained generation, as TerraTorch, it shares its input embeddings with the backbone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .decoders import build_decoder
from .generation import sample_targets
from .heads import HEADS
from .necks import build_necks, check_arguments
from .registry import ModelConfig, get_config, resolve_modality
from .sampling import Sampling
from .terramind import TerraMind

KINDS = ("segmentation", "regression")
MERGES = ("mean", "max", "concat")


@dataclass(frozen=True)
class TaskSpec:
    """What a fine-tuned model is, as its TerraTorch config says (``xterramind.models.tasks.read_config``).

    Attributes:
        kind: ``"segmentation"`` (class scores) or ``"regression"`` (values).
        backbone: the TerraMind variant, e.g. ``"terramind_v1_tiny"``.
        inputs: per input modality (xterramind names, in the config's order) its patch embedding's channel count.
        outputs: classes (segmentation) or regressed values per pixel.
        merge: how the inputs' tokens are merged (TerraTorch's ``backbone_merge_method``).
        necks: TerraTorch's ``necks`` list.
        decoder: the decoder's name; ``decoder_args`` and ``head_args`` its and the head's arguments.
        rescale: bilinear resize of the output to the input's size when they differ (TerraTorch's ``rescale``).
        tim: the Thinking-in-Modalities token modalities generated first (``("LULC",)``), none for a plain backbone.
        tim_sampling: how their tokens are drawn; ``tim_chained``: each conditioned on those before (shared embeddings).
    """

    kind: str
    backbone: str
    inputs: tuple[tuple[str, int], ...]
    outputs: int
    decoder: str
    necks: tuple = ()
    decoder_args: Mapping = field(default_factory=dict)
    head_args: Mapping = field(default_factory=dict)
    merge: str = "mean"
    rescale: bool = True
    tim: tuple[str, ...] = ()
    tim_sampling: Sampling = Sampling()
    tim_chained: bool = True

    @property
    def config(self) -> ModelConfig:
        return get_config(self.backbone)


class TimBackbone(TerraMind):
    """A TiM backbone: TerraMind's encoder over the inputs and the generated TiM grids, and ``sampler.model``, the
    encoder-decoder that generates those grids first."""

    def __init__(self, config: ModelConfig, encoders: dict[str, int | None], tim: Sequence[str], chained: bool):
        inputs = {key: channels for key, channels in encoders.items() if key not in tim}
        super().__init__(config, decoder=False, encoders=encoders)
        self.sampler = nn.Module()
        self.sampler.model = TerraMind(config, decoder=True, encoders=encoders if chained else inputs, decoders=tim)
        if chained:  # as TerraTorch: the generator's encoder embeddings are the backbone's own modules
            self.sampler.model.encoder_embeddings = self.encoder_embeddings
            self.sampler.model.tie_weights()


class FineTuned(nn.Module):
    """TerraTorch's ``PixelWiseModel`` of a TerraMind backbone: ``encoder``, ``neck``, ``decoder``, ``head``.

    ``forward(inputs, seeds=None)`` takes standardized ``(B, C, H, W)`` inputs by modality name and gives what
    TerraTorch's ``model(x).output`` gives: ``(B, classes, H, W)`` scores, or ``(B, H, W)`` for one output. A TiM
    backbone draws each tile's grids from its seed in ``seeds`` (one per tile).
    """

    def __init__(self, spec: TaskSpec):
        super().__init__()
        if spec.kind not in KINDS:
            raise ConfigError(f"task kind {spec.kind!r} is not supported; supported: {KINDS}")
        if spec.merge not in MERGES:
            raise ConfigError(f"backbone_merge_method {spec.merge!r} is not supported for a pixel-wise model; "
                              f"supported: {MERGES}")
        self.spec, config = spec, spec.config
        encoders = {resolve_modality(name).key: channels for name, channels in spec.inputs}
        tim = [resolve_modality(f"tok_{name}").key for name in spec.tim]
        if tim:
            self.encoder = TimBackbone(config, encoders | dict.fromkeys(tim), tim, spec.tim_chained)
        else:
            self.encoder = TerraMind(config, decoder=False, encoders=encoders)
        grids = len(spec.inputs) + len(tim)
        if spec.merge == "concat":  # TerraTorch's stand-in for a missing modality: loaded, never used here
            self.encoder.missing_mod_token = nn.Parameter(torch.zeros(config.dim))
        width = config.dim * (grids if spec.merge == "concat" else 1)
        self.neck, channels = build_necks(list(spec.necks), [width] * config.encoder_depth)
        self.decoder = build_decoder(spec.decoder, channels, dict(spec.decoder_args))
        head = HEADS[spec.kind]
        counts = {"num_classes" if spec.kind == "segmentation" else "num_outputs": spec.outputs}
        check_arguments(f"the {spec.kind} head", head, dict(spec.head_args), skip=("in_channels", *counts),
                        prefix="head_")
        self.head = head(self.decoder.out_channels, **spec.head_args, **counts)

    def tie_weights(self) -> None:
        """Share what TerraTorch shares: a TiM generator's embeddings and logits (``empty_module`` calls it)."""
        if self.spec.tim:
            self.encoder.sampler.model.tie_weights()

    def forward(self, inputs: Mapping[str, torch.Tensor], seeds: Sequence[int] | None = None) -> torch.Tensor:
        size = next(iter(inputs.values())).shape[-2:]
        inputs = dict(inputs)
        if self.spec.tim:
            inputs |= self.think(inputs, seeds)
        features = self.encoder.encode(inputs, merge=self.spec.merge, layers=None)
        features = self.neck(features, image_size=size)
        out = self.head(self.decoder([feature.clone() for feature in features]))
        if self.spec.rescale and out.shape[-2:] != size:
            out = F.interpolate(out, size=size, mode="bilinear")
        if out.shape[1] == 1:
            out = out.squeeze(1)
        top, left = max((out.shape[-2] - size[0]) // 2, 0), max((out.shape[-1] - size[1]) // 2, 0)
        return out[..., top:top + size[0], left:left + size[1]]

    def think(self, inputs: Mapping[str, torch.Tensor], seeds: Sequence[int] | None) -> dict[str, torch.Tensor]:
        """The TiM token grids of a batch, each tile's from its own seed."""
        first = next(iter(inputs.values()))
        if seeds is None or len(seeds) != len(first):
            raise InputError(f"a TiM model needs one seed per tile: {len(first)} for this batch, got {seeds!r}")
        patch = self.spec.config.patch_size
        grid = (first.shape[-2] // patch, first.shape[-1] // patch)
        targets = [f"tok_{name}" for name in self.spec.tim]
        tokens, _ = sample_targets(self.encoder.sampler.model, inputs, targets, list(seeds), grid,
                                   self.spec.tim_sampling)
        return {f"tok_{name}": tokens[f"tok_{name}"] for name in self.spec.tim}
