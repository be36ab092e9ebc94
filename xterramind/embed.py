"""The ``embed`` verb: TerraMind's encoder over a cube, one embedding per token (16 x 16 pixels).

Embeddings are stored as ``dtype`` says, converted on the model's device before they leave it:

- ``"float32"``: the model's output as it is.
- ``"float16"``: half the size; each component within 2^-11 of its value (relative), NaN where nodata.
- ``"int8"``: a quarter of the size, after the AlphaEarth Foundations convention: each vector made unit length,
  each component square-root companded, ``q = round(sign(x) sqrt(|x|) 127)``, -128 where nodata; decoded as
  ``sign(q) (q / 127)^2``. TerraMind's vectors are not unit length, so their lengths are kept beside them
  (``embeddings_scale``, float32): the result is a Dataset of both, and ``dequantize`` gives the vectors back.

Measured on the bundled sample (micro and tiny, random weights), relative to each vector's length, the largest
error of a component is 1.2e-4 (float16) and 5.0e-3 (int8; 7.9e-3 at most by construction), and the cosine
similarity to the float32 vector at least 0.9999999 (float16) and 0.99985 (int8; base, 768-d: 0.99974, as the
rounding errors of more components add up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from .arguments import dtype_name, names, whole_number
from .engine import check_model, lay_out, provenance
from .errors import InputError, OptionError
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
    dtype: str = "float32"  # one of ``DTYPES``


DTYPES = ("float32", "float16", "int8")  # how embeddings are stored (see the module docstring)
SCALE = "embeddings_scale"  # an int8 result's second variable: each vector's length
INT8_NODATA = -128  # an int8 component of a token without valid pixels
INT8_STEPS = 127  # int8 codes of a unit vector's component: -127..127, on the square-root scale
INT8_DECODING = f"sign(q) * (q / {INT8_STEPS})**2 * {SCALE}"  # the vector from its codes q: in every int8 product
_TORCH = {"float32": torch.float32, "float16": torch.float16, "int8": torch.int8}


def prepare(
    cube: xr.Dataset | xr.DataArray,
    model: TerraMindModel,
    modalities=None,
    *,
    layer: int = -1,
    merge: str = "mean",
    tim: Sequence[str] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    coords: bool = False,
    tile_size: int | None = None,
    overlap: int = 32,
    chunks: int | None = None,
    batch_size: int | None = None,
    check_input: bool = True,
) -> Prepared:
    """Embedding a cube: a DataArray ``embeddings`` with dims ``(time,) embedding, y, x`` on the token grid, of
    ``dtype`` ``"float32"`` or ``"float16"``; for ``"int8"`` a Dataset of those int8 codes and their vectors'
    lengths ``embeddings_scale`` ``(time,) y, x`` (see the module docstring; ``dequantize`` gives floats back).
    ``check_input=False`` lets pass pixels far from 10 m and values that look like a unit mistake."""
    check_model(model)
    dtype = dtype_name("dtype", dtype, DTYPES)
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
                   thinking, seed, dtype=dtype)
    attrs = provenance(model, layout.tiles.modalities + ("coords",) * coords + thinking, seed if thinking else None,
                       layout)
    attrs |= {"product": "embeddings", "layer": layer, "merge": merge} | ({"tim": list(thinking)} if thinking else {})
    outputs = {"embeddings": (np.dtype(dtype), (job.features,))} | ({SCALE: (np.float32, ())} if dtype == "int8" else {})

    def assemble(arrays):
        time = ("time",) * (layout.times is not None)
        result = xr.DataArray(arrays["embeddings"], dims=(*time, "embedding", "y", "x"), name="embeddings", attrs=attrs,
                              coords={"embedding": np.arange(job.features), **layout.time_coords()})
        if dtype == "int8":
            result.attrs = attrs | {"nodata": INT8_NODATA, "decoding": f"{INT8_DECODING}, NaN where q is "
                                    f"{INT8_NODATA}: xterramind.dequantize"}
            scale = xr.DataArray(arrays[SCALE], dims=(*time, "y", "x"), attrs=attrs | {
                "long_name": "length of each embedding vector (its int8 codes are of the unit vector)"})
            result = xr.Dataset({"embeddings": result, SCALE: scale}, attrs=attrs)
        return georeferenced(result, layout.tiling.tokens)

    return Prepared(EMBED, layout, job, model, outputs, assemble)


def embed(cube: xr.Dataset | xr.DataArray, model: TerraMindModel, modalities=None, **options
          ) -> xr.DataArray | xr.Dataset:
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
    return stored(tokens.transpose(1, 2).reshape(len(batch), job.features, side, side), job.dtype)


def stored(vectors: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """Embeddings ``(B, features, h, w)`` as ``dtype`` stores them, on their device (fewer bytes leave it):
    float32 or float16 values, or int8 codes of the unit vectors and the vectors' lengths ``(B, h, w)``.

    Example:
        >>> out = stored(torch.tensor([3.0, -4.0]).reshape(1, 2, 1, 1), "int8")   # one vector of length 5
        >>> out["embeddings"].flatten().tolist(), out["embeddings_scale"].item()
        ([98, -114], 5.0)
    """
    if dtype != "int8":
        return {"embeddings": vectors.to(_TORCH[dtype])}
    vectors = vectors.float()
    length = torch.linalg.vector_norm(vectors, dim=1)
    unit = vectors / length.clamp(min=torch.finfo(torch.float32).tiny)[:, None]
    codes = (unit.sign() * unit.abs().sqrt() * INT8_STEPS).round().clamp(-INT8_STEPS, INT8_STEPS)
    return {"embeddings": codes.to(torch.int8), SCALE: length}


def _stitched(job: EmbedJob) -> dict:
    blocks = {"embeddings": (_TORCH[job.dtype], (job.features,), INT8_NODATA if job.dtype == "int8" else float("nan"))}
    return {"blocks": blocks | ({SCALE: (torch.float32, (), float("nan"))} if job.dtype == "int8" else {})}


def dequantize(result: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Float32 values back from a compact result, lazily: the embeddings of ``embed(dtype="int8")`` (the Dataset,
    as computed or as ``xterramind.open`` reads its store) become the float32 DataArray ``embeddings``, NaN
    where nodata; float16 embeddings become float32; CF-packed variables (``generate(probabilities="uint8")``'s
    ``LULC_probability``) are unpacked, NaN at their ``_FillValue``. Anything else comes back as it is.

    The int8 vectors are within 7.9e-3 of each vector's length per component (cosine similarity to the
    float32 vector above 0.9998 for micro and tiny on the bundled sample, 0.9997 for base); float16 within
    2^-11 of each value.

    Raises:
        InputError: int8 embeddings without their ``embeddings_scale`` (the Dataset's other variable).

    Example:
        >>> codes = cube.terramind.embed(model, dtype="int8")       # Dataset: embeddings (int8), embeddings_scale
        >>> vectors = xterramind.dequantize(codes)                  # DataArray embeddings, float32
        >>> vectors = xterramind.dequantize(xterramind.open("embeddings.zarr"))
    """
    if isinstance(result, xr.Dataset) and {"embeddings", SCALE} <= set(result.data_vars):
        codes = result["embeddings"]
        unit = codes.astype(np.float32) / np.float32(INT8_STEPS)
        vectors = (abs(unit) * unit * result[SCALE]).where(codes != INT8_NODATA).transpose(*codes.dims)
        vectors = vectors.rename("embeddings")
        vectors.attrs = {k: v for k, v in codes.attrs.items() if k not in ("nodata", "decoding")}
        return vectors
    if isinstance(result, xr.Dataset):
        return result.assign({name: _unpacked(var) for name, var in result.data_vars.items()})
    if isinstance(result, xr.DataArray) and result.dtype == np.int8 and result.attrs.get("product") == "embeddings":
        raise InputError(f"int8 embeddings need their {SCALE}: pass the Dataset embed(dtype='int8') gives (or "
                         "xterramind.open reads from its store), not its embeddings variable alone")
    return _unpacked(result) if isinstance(result, xr.DataArray) else result


def _unpacked(var: xr.DataArray) -> xr.DataArray:
    """A variable as float32: CF-packed integers scaled (NaN at the fill value), float16 widened, else as it is."""
    attrs = dict(var.attrs)
    if "scale_factor" in attrs:
        scale, fill = attrs.pop("scale_factor"), attrs.pop("_FillValue", attrs.get("nodata"))
        attrs.pop("nodata", None)
        values = var.astype(np.float32) * np.float32(scale)
        values = values if fill is None else values.where(var != fill)
        values.attrs = attrs
        return values
    unpacked_wide = var.dtype == np.float64 and "scale_factor" in var.encoding  # xarray.open_zarr's unpacking
    if var.dtype == np.float16 or unpacked_wide:
        return var.astype(np.float32)
    return var


EMBED = Verb("embed", prepare, kernel, TOKENS, _stitched, numpy_blocks)
