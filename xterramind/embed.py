"""The ``embed`` verb: TerraMind's encoder over a cube, one embedding per token (16 x 16 pixels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from .arguments import names, whole_number
from .engine import check_model, lay_out, provenance
from .errors import OptionError
from .geo import georeferenced
from .models.handle import TerraMindModel
from .models.registry import token_spec
from .models.sampling import Sampling, tile_seed
from .tiles import Tiles
from .verb import TOKENS, Prepared, Verb, numpy_blocks


@dataclass(frozen=True)
class EmbedJob:
    tiles: Tiles
    layer: int
    merge: str
    features: int
    tim: tuple[str, ...] = ()
    seed: int = 0
    sampling: Sampling = field(default_factory=Sampling)


def prepare(
    cube: xr.Dataset | xr.DataArray,
    model: TerraMindModel,
    modalities=None,
    *,
    layer: int = -1,
    merge: str = "mean",
    tim: Sequence[str] | None = None,
    seed: int = 0,
    coords: bool = False,
    tile_size: int | None = None,
    overlap: int = 32,
    chunks: int | None = None,
    batch_size: int | None = None,
    check_input: bool = True,
) -> Prepared:
    """Embedding a cube: a DataArray ``embeddings`` with dims ``(time,) embedding, y, x`` on the token grid.
    ``check_input=False`` lets pass pixels far from 10 m and values that look like a unit mistake."""
    check_model(model)
    if merge not in ("mean", "max", "concat"):
        raise OptionError(f"merge must be 'mean', 'max' or 'concat' for a token grid, got {merge!r}")
    depth = model.config.encoder_depth
    layer, seed = whole_number("layer", layer), whole_number("seed", seed)
    if not -depth <= layer < depth:
        raise OptionError(f"layer {layer} does not exist: {model.name} has {depth} encoder layers")
    layout = lay_out(cube, model, modalities, tile_size=tile_size, overlap=overlap, chunks=chunks,
                     batch_size=batch_size, coords=coords, check_input=check_input)
    thinking = tuple(token_spec(name).name for name in names("tim", tim, "LULC"))
    grids = len(layout.inputs) + len(thinking)
    job = EmbedJob(layout.tiles, layer % depth, merge, model.config.dim * (grids if merge == "concat" else 1),
                   thinking, seed)
    attrs = provenance(model, layout.tiles.modalities + ("coords",) * coords + thinking, seed if thinking else None,
                       layout)
    attrs |= {"product": "embeddings", "layer": layer, "merge": merge} | ({"tim": list(thinking)} if thinking else {})

    def assemble(arrays):
        dims = ("time",) * (layout.times is not None) + ("embedding", "y", "x")
        result = xr.DataArray(arrays["embeddings"], dims=dims, name="embeddings", attrs=attrs,
                              coords={"embedding": np.arange(job.features), **layout.time_coords()})
        return georeferenced(result, layout.tiling.tokens)

    return Prepared(EMBED, layout, job, model, {"embeddings": (np.float32, (job.features,))}, assemble)


def embed(cube: xr.Dataset | xr.DataArray, model: TerraMindModel, modalities=None, **options) -> xr.DataArray:
    """Lazily embed a cube (see ``prepare`` and the accessor)."""
    return prepare(cube, model, modalities, **options).lazy()


def kernel(job: EmbedJob, model: TerraMindModel, inputs: dict, batch) -> dict[str, torch.Tensor]:
    """A batch's embeddings ``(B, features, h, w)``; with Thinking-in-Modalities, the ``tim`` token grids are
    generated first (each tile from its own seed) and encoded with the inputs."""
    if job.tim:
        s = job.sampling
        seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
        inputs = inputs | {f"tok_{name}": grid for name, grid in model.generate(
            inputs, list(job.tim), seeds=seeds, top_k=s.top_k, top_p=s.top_p, temperature=s.temperature,
            decode=False).items()}
    tokens = model.encode(inputs, merge=job.merge, layers=job.layer)
    side = job.tiles.tile_tokens
    return {"embeddings": tokens.transpose(1, 2).reshape(len(batch), job.features, side, side)}


def _stitched(job: EmbedJob) -> dict:
    return {"blocks": {"embeddings": (torch.float32, (job.features,), float("nan"))}}


EMBED = Verb("embed", prepare, kernel, TOKENS, _stitched, numpy_blocks)
