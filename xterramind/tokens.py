"""The token verbs: ``tokenize`` (a modality's pixels -> its tokenizer's ids on the token grid) and
``detokenize`` (a token grid -> that modality's pixels on the 16 x finer grid, blended across tiles)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from . import products
from .arguments import whole_number
from .engine import check_model, lay_out, provenance
from .errors import InputError, OptionError
from .facts import TOKEN_NODATA
from .geo import georeferenced, grid_of
from .modalities import ModalityInput
from .models.handle import TerraMindModel
from .models.registry import MODALITIES, token_spec
from .models.sampling import Sampling, tile_seed
from .tiles import Tiles
from .verb import PIXELS, TOKENS, Prepared, Verb, numpy_blocks

# -- tokenize -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenJob:
    tiles: Tiles
    modality: str  # the tokenizer's input modality, e.g. "S2L2A"


def prepare_tokenize(cube, model: TerraMindModel, *, modality: str, tile_size=None, overlap=32, chunks=None,
                     batch_size=None, check_input: bool = True) -> Prepared:
    """Tokenizing one modality of the cube: int32 tokens ``(time,) y, x`` on the token grid, -1 where a
    token's pixels are all nodata."""
    check_model(model)
    spec = token_spec(modality)
    name = spec.name.removeprefix("tok_")
    if name not in {s.name for s in MODALITIES.values() if s.kind == "image"}:
        raise OptionError(f"tokenize reads {name} from a cube only for S2L2A, S1GRD, S1RTC and DEM; for {name} "
                         "tensors use model.tokenize()")
    layout = lay_out(cube, model, [name], tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                     check_input=check_input)
    job = TokenJob(layout.tiles, name)
    attrs = provenance(model, [name], None, layout) | {
        "product": "tokens", "tokenizer": name, "tokenizer_weights": model.tokenizer_weights_id(name),
        "vocab_size": spec.vocab_size, "nodata": TOKEN_NODATA}

    def assemble(arrays):
        dims = ("time",) * (layout.times is not None) + ("y", "x")
        result = xr.DataArray(arrays["tokens"], dims=dims, coords=layout.time_coords(), name="tokens", attrs=attrs)
        return georeferenced(result, layout.tiling.tokens)

    return Prepared(TOKENIZE, layout, job, model, {"tokens": (np.int32, ())}, assemble)


def tokenize(cube, modality: str, model: TerraMindModel, **options) -> xr.DataArray:
    """Lazily tokenize one modality of the cube (see ``prepare_tokenize`` and the accessor)."""
    return prepare_tokenize(cube, model, modality=modality, **options).lazy()


def _tokenize_kernel(job: TokenJob, model: TerraMindModel, inputs: dict, batch) -> dict[str, torch.Tensor]:
    return {"tokens": model.tokenize(job.modality, inputs[job.modality])}


def _token_block(job: TokenJob) -> dict:
    return {"blocks": {"tokens": (torch.int32, (), TOKEN_NODATA)}}


TOKENIZE = Verb("tokenize", prepare_tokenize, _tokenize_kernel, TOKENS, _token_block, numpy_blocks)

# -- detokenize ---------------------------------------------------------------------------------------


def prepare_detokenize(tokens: xr.DataArray, model: TerraMindModel, *, modality: str, seed: int = 0,
                       timesteps: int = 50, tile_size=None, overlap=32, chunks=None, batch_size=None) -> Prepared:
    """Decoding a token grid into pixels of ``modality`` on the 16x finer pixel grid (see the accessor)."""
    check_model(model)
    spec, seed = token_spec(modality), whole_number("seed", seed)
    if not isinstance(tokens, xr.DataArray) or not {"y", "x"} <= set(tokens.dims):
        raise InputError("detokenize needs a DataArray of token ids with dims (y, x), as tokenize() returns")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise InputError(f"token ids must be integers, got {tokens.dtype}")
    grid = grid_of(tokens, "the token grid").refined(model.config.patch_size)
    order = [d for d in ("time", "y", "x") if d in tokens.dims]
    data = tokens.transpose(*order).expand_dims("band", axis=len(order) - 2)
    inputs = [ModalityInput(spec, data, (float(TOKEN_NODATA),))]
    layout = lay_out(None, model, tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                     inputs=inputs, grid=grid)
    sampling = Sampling(0, 0.0, 1.0, whole_number("timesteps", timesteps, 1))
    job = products.PixelJob(layout.tiles, (spec.name,), sampling, seed)
    attrs = provenance(model, [spec.name], seed, layout) | {"timesteps": sampling.timesteps}
    attrs["tokenizers"] = {spec.name.removeprefix("tok_"): model.tokenizer_weights_id(spec.name)}
    return Prepared(DETOKENIZE, layout, job, model, products.outputs([spec]),
                    lambda arrays: products.pixel_dataset(arrays, layout, grid, [spec], attrs))


def detokenize(tokens: xr.DataArray, modality: str, model: TerraMindModel, **options) -> xr.Dataset:
    """Lazily decode a token grid into pixels of ``modality`` (see ``prepare_detokenize`` and the accessor)."""
    return prepare_detokenize(tokens, model, modality=modality, **options).lazy()


def _detokenize_kernel(job: products.PixelJob, model: TerraMindModel, inputs: dict, batch) -> dict[str, torch.Tensor]:
    (target,) = job.targets
    name, _ = products.pixel_spec(token_spec(target))
    seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
    decoded = model.detokenize(name, inputs[target], seeds=seeds, timesteps=job.sampling.timesteps)
    return {name: products.as_blended(name, decoded)}


DETOKENIZE = Verb("detokenize", prepare_detokenize, _detokenize_kernel, PIXELS, products.blending, products.finish)
