"""TerraMind v1 in plain PyTorch: the multimodal encoder and the token decoder used by generation.

The module's state dict has exactly the names and shapes of the official checkpoints
(``TerraMind_v1_{tiny,small,base,large}.pt``). Inputs are standardized tensors; see
``TerraMind.encode``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from .embeddings import (
    SEQUENCE_POSITIONS,
    ImagePatchEmbedding,
    SequenceDecoderEmbedding,
    SequenceEmbedding,
    TokenGridDecoderEmbedding,
    TokenGridEmbedding,
)
from .layers import Block, DecoderBlock, LayerNorm
from .registry import DECODER_MODALITIES, ENCODER_MODALITIES, MODALITIES, ModalitySpec, ModelConfig, resolve_modality

MERGES = ("mean", "max", "concat", "dict", "none")


def _encoder_embedding(spec: ModalitySpec, config: ModelConfig, channels: int | None = None) -> nn.Module:
    if spec.kind == "image":
        return ImagePatchEmbedding(channels or spec.channels, config.dim, config.patch_size, config.grid_size)
    if spec.kind == "tokens":
        return TokenGridEmbedding(spec.vocab_size, config.dim, config.grid_size)
    return SequenceEmbedding(spec.vocab_size, config.dim)


def _decoder_embedding(spec: ModalitySpec, config: ModelConfig) -> nn.Module:
    if spec.kind == "tokens":
        return TokenGridDecoderEmbedding(spec.vocab_size, config.dim, config.grid_size)
    return SequenceDecoderEmbedding(spec.vocab_size, config.dim)


@dataclass
class Context:
    """What the decoder attends to: the projected encoder output and which of its tokens are padding."""

    tokens: torch.Tensor  # (B, M, D)
    hidden: torch.Tensor | None  # (B, M), True for padding; None when nothing is hidden


@dataclass
class _Embedded:
    spec: ModalitySpec
    x: torch.Tensor
    emb: torch.Tensor


class TerraMind(nn.Module):
    """The TerraMind encoder (all 13 input embeddings) and, with ``decoder=True``, its decoder.

    Built without the decoder it holds exactly the encoder part of an official checkpoint, which is
    all that embedding extraction needs. A fine-tuned backbone holds fewer embeddings: ``encoders`` maps the
    checkpoint keys of its inputs to their channel counts (None: the modality's own; fewer where fine-tuned on
    some bands), ``decoders`` lists the token grids it generates.
    """

    def __init__(self, config: ModelConfig, decoder: bool = True, encoders: Mapping[str, int | None] | None = None,
                 decoders: Sequence[str] | None = None):
        super().__init__()
        self.config = config
        blocks = dict(
            dim=config.dim, num_heads=config.num_heads, hidden=config.mlp_hidden, swiglu=config.swiglu, bias=config.bias
        )
        encoders = dict.fromkeys(ENCODER_MODALITIES) if encoders is None else encoders
        self.encoder_embeddings = nn.ModuleDict(
            {key: _encoder_embedding(MODALITIES[key], config, channels) for key, channels in encoders.items()}
        )
        self.encoder = nn.ModuleList(Block(**blocks) for _ in range(config.encoder_depth))
        self.encoder_norm = LayerNorm(config.dim)
        self.has_decoder = decoder
        if decoder:
            self.decoder_embeddings = nn.ModuleDict(
                {key: _decoder_embedding(MODALITIES[key], config) for key in decoders or DECODER_MODALITIES}
            )
            self.decoder_proj_context = nn.Linear(config.dim, config.dim)
            self.decoder = nn.ModuleList(DecoderBlock(**blocks) for _ in range(config.decoder_depth))
            self.decoder_norm = LayerNorm(config.dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.tie_weights()

    @classmethod
    def empty(cls, config: ModelConfig, decoder: bool = True, **embeddings) -> TerraMind:
        """A model with allocated but unset weights (position tables set): fast to make, to be filled."""
        with torch.device("meta"):
            module = cls(config, decoder, **embeddings)
        module.to_empty(device="cpu").tie_weights()
        for embedding in module.modules():
            if hasattr(embedding, "reset_pos_emb"):
                embedding.reset_pos_emb()
        return module

    def tie_weights(self) -> TerraMind:
        """Share what the checkpoints share: decoder modality embeddings with the encoder's, and each
        decoder's output projection with its token table."""
        if self.has_decoder:
            for key, embedding in self.decoder_embeddings.items():
                if key in self.encoder_embeddings:
                    embedding.mod_emb = self.encoder_embeddings[key].mod_emb
                embedding.to_logits.weight = embedding.token_emb.weight
        return self

    # -- inputs ---------------------------------------------------------------------------------

    def _embed(self, inputs: Mapping[str, torch.Tensor], hidden: Mapping[str, torch.Tensor]) -> list[_Embedded]:
        """Embed every input; ``hidden`` is keyed by checkpoint key (sequence positions skip hidden tokens)."""
        if not inputs:
            raise InputError("no inputs: pass a dict such as {'S2L2A': tensor of shape (B, 12, H, W)}")
        embedded, batch = [], None
        for name, tensor in inputs.items():
            spec = resolve_modality(name)
            if spec.key not in self.encoder_embeddings:
                taken = [MODALITIES[key].name for key in self.encoder_embeddings]
                raise InputError(f"this model takes no {spec.name} input; it takes {taken}")
            embedding = self.encoder_embeddings[spec.key]
            _check_input(spec, tensor, self.config.patch_size, getattr(embedding, "channels", spec.channels))
            if batch is not None and tensor.shape[0] != batch:
                raise InputError(f"batch sizes differ between inputs: {name} has {tensor.shape[0]}, others {batch}")
            batch = tensor.shape[0]
            if spec.kind == "sequence":
                x, emb = embedding(tensor, hidden.get(spec.key))
            else:
                x, emb = embedding(tensor)
            embedded.append(_Embedded(spec, x, emb.expand_as(x)))
        return embedded

    # -- encoder --------------------------------------------------------------------------------

    def encode(
        self,
        inputs: Mapping[str, torch.Tensor],
        *,
        merge: str = "mean",
        layers: int | Sequence[int] | None = None,
    ):
        """Encode standardized inputs; return the outputs of the requested transformer layers.

        Args:
            inputs: modality name → tensor. Raw images (``"S2L2A"``, ``"S2L1C"``, ``"RGB"``,
                ``"S1GRD"``, ``"S1RTC"``, ``"DEM"``) as standardized ``(B, C, H, W)`` floats with H
                and W multiples of 16; tokenized images (``"tok_S2L2A"``, ``"tok_S1GRD"``,
                ``"tok_S1RTC"``, ``"tok_DEM"``, ``"tok_LULC"``, ``"tok_NDVI"``) as ``(B, h, w)``
                token ids; ``"coords"`` as ``(B, L)`` token ids.
            merge: how modalities are combined: ``"mean"`` or ``"max"`` over the image and token-grid
                modalities (``(B, N, D)``; sequences are dropped), ``"concat"`` along features
                (``(B, N, D * M)``), ``"dict"`` (name → ``(B, N_m, D)``), ``"none"`` (the raw
                ``(B, N_total, D)`` sequence).
            layers: ``None`` for every layer (a list), an index such as ``-1`` for one layer, or a
                list of indices. Only the last layer has the final norm applied, as in the reference.

        Example:
            >>> model.encode({"S2L2A": x}, layers=-1).shape  # x: (8, 12, 224, 224)
            torch.Size([8, 196, 768])
        """
        if merge not in MERGES:
            raise InputError(f"unknown merge {merge!r}; choose one of {MERGES}")
        wanted = _layer_indices(layers, len(self.encoder))
        embedded = self._embed(inputs, {})
        x = torch.cat([e.x + e.emb for e in embedded], dim=1)
        outputs = {}
        for index, block in enumerate(self.encoder[: max(wanted) + 1]):
            x = block(x)
            if index in wanted:
                outputs[index] = self.encoder_norm(x) if index == len(self.encoder) - 1 else x
        merged = [_merge(outputs[i], embedded, merge) for i in wanted]
        return merged[0] if isinstance(layers, int) else merged

    def encode_context(
        self, inputs: Mapping[str, torch.Tensor], hidden: Mapping[str, torch.Tensor] | None = None
    ) -> Context:
        """Run the encoder over the visible tokens and project its output for the decoder.

        ``hidden`` maps a modality to a boolean ``(B, N_m)`` mask, True for tokens the encoder must
        not see (for example targets not generated yet). Hidden tokens are dropped; where batch
        items keep different numbers of tokens, the shorter ones are padded and the padding masked.
        """
        self._require_decoder()
        hidden = {resolve_modality(name).key: mask for name, mask in (hidden or {}).items()}
        embedded = self._embed(inputs, hidden)
        x = torch.cat([e.x for e in embedded], dim=1)
        emb = torch.cat([e.emb for e in embedded], dim=1)
        masks = [hidden.get(e.spec.key, torch.zeros(e.x.shape[:2], dtype=torch.bool, device=x.device)) for e in embedded]
        for mask, e in zip(masks, embedded, strict=False):
            if mask.shape != e.x.shape[:2]:
                raise InputError(f"hidden mask for {e.spec.name} has shape {tuple(mask.shape)}, expected {tuple(e.x.shape[:2])}")
        x, emb, padding = _keep_visible(x, emb, torch.cat(masks, dim=1).to(x.device))
        tokens = x + emb
        for block in self.encoder:
            tokens = block(tokens, padding)
        tokens = self.decoder_proj_context(self.encoder_norm(tokens)) + emb
        return Context(tokens, padding)

    # -- decoder --------------------------------------------------------------------------------

    def decode_grid(
        self, context: Context, target: str, grid: tuple[int, int], positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(B, n, vocab)`` for cells of a target token grid, all decoded in one pass.

        ``grid`` is the target's token grid ``(rows, cols)``; ``positions`` ``(B, n)`` picks row-major
        cells (default: all of them, in order). Queries are the mask token plus each cell's
        position and modality embedding; they attend to each other and to the context.
        """
        self._require_decoder()
        spec = resolve_modality(target)
        if spec.kind != "tokens":
            raise InputError(f"{spec.name} is not a token-grid modality; decodable grids: "
                             f"{[MODALITIES[k].name for k in DECODER_MODALITIES if MODALITIES[k].kind == 'tokens']}")
        embedding = self.decoder_embeddings[spec.key]
        query_emb = embedding.query_emb(*grid).expand(context.tokens.shape[0], -1, -1)
        if positions is not None:
            query_emb = torch.gather(query_emb, 1, positions[..., None].expand(-1, -1, query_emb.shape[2]))
        y = self.mask_token + query_emb
        for block in self.decoder:
            y = block(y, context.tokens, context.hidden)
        return embedding.to_logits(self.decoder_norm(y))

    def _require_decoder(self) -> None:
        if not self.has_decoder:
            raise InputError("this model was built without its decoder; build TerraMind(config, decoder=True)")


def _check_input(spec: ModalitySpec, tensor: torch.Tensor, patch: int, channels: int) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"{spec.name}: expected a torch.Tensor, got {type(tensor).__name__}")
    if spec.kind == "image":
        if tensor.ndim != 4 or tensor.shape[1] != channels:
            bands = f" with bands {list(spec.bands)}" if channels == spec.channels else ""
            raise InputError(f"{spec.name}: expected shape (B, {channels}, H, W){bands}, got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise InputError(f"{spec.name}: expected standardized floats, got {tensor.dtype}; use model.normalize()")
        if tensor.shape[2] % patch or tensor.shape[3] % patch or tensor.shape[2] == 0 or tensor.shape[3] == 0:
            raise InputError(f"{spec.name}: height and width must be positive multiples of {patch}, got {tuple(tensor.shape[2:])}")
        return
    rank = 3 if spec.kind == "tokens" else 2
    layout = "(B, h, w)" if rank == 3 else "(B, L)"
    if tensor.ndim != rank or tensor.is_floating_point() or tensor.is_complex():
        raise InputError(f"{spec.name}: expected integer token ids of shape {layout}, got {tensor.dtype} {tuple(tensor.shape)}")
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= spec.vocab_size):
        raise InputError(f"{spec.name}: token ids must lie in [0, {spec.vocab_size}), got [{int(tensor.min())}, {int(tensor.max())}]")
    if rank == 2 and tensor.shape[1] > SEQUENCE_POSITIONS:
        raise InputError(f"{spec.name}: at most {SEQUENCE_POSITIONS} tokens, got {tensor.shape[1]}")


def _layer_indices(layers: int | Sequence[int] | None, depth: int) -> list[int]:
    requested = range(depth) if layers is None else [layers] if isinstance(layers, int) else list(layers)
    indices = []
    for layer in requested:
        if not -depth <= layer < depth:
            raise InputError(f"layer {layer} does not exist: the encoder has {depth} layers (0..{depth - 1} or -1..-{depth})")
        indices.append(layer % depth)
    if not indices:
        raise InputError("layers is empty; pass None for every layer or an index such as -1")
    return indices


def _merge(x: torch.Tensor, embedded: list[_Embedded], merge: str):
    if merge == "none":
        return x
    parts = torch.split(x, [e.x.shape[1] for e in embedded], dim=1)
    if merge == "dict":
        return {e.spec.name: part for e, part in zip(embedded, parts, strict=False)}
    grids = [(e, part) for e, part in zip(embedded, parts, strict=False) if e.spec.kind != "sequence"]
    if not grids:
        raise InputError(f"merge={merge!r} needs at least one image or token-grid input; use merge='dict'")
    if len({part.shape[1] for _, part in grids}) > 1:
        sizes = {e.spec.name: part.shape[1] for e, part in grids}
        raise InputError(f"merge={merge!r} needs the same token grid for every modality, got {sizes}; use merge='dict'")
    if merge == "concat":
        return torch.cat([part for _, part in grids], dim=-1)
    stacked = torch.stack([part for _, part in grids], dim=1)
    return stacked.mean(dim=1) if merge == "mean" else stacked.amax(dim=1)


def _keep_visible(x: torch.Tensor, emb: torch.Tensor, hidden: torch.Tensor):
    """Drop hidden tokens, keeping the visible ones in order; pad rows that keep fewer."""
    if not hidden.any():
        return x, emb, None
    if hidden.all(dim=1).any():
        raise InputError("every input token of some batch item is hidden: the encoder needs at least one visible token")
    order = torch.argsort(hidden.to(torch.uint8), dim=1, stable=True)
    keep = order[:, : int((~hidden).sum(dim=1).max())]
    padding = torch.gather(hidden, 1, keep)
    index = keep[..., None].expand(-1, -1, x.shape[2])
    x = torch.gather(x, 1, index).masked_fill(padding[..., None], 0.0)
    emb = torch.gather(emb, 1, index).masked_fill(padding[..., None], 0.0)
    return x, emb, (padding if padding.any() else None)
