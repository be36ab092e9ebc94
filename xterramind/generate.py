"""The ``generate`` verb: TerraMind's any-to-any generation of other modalities from a cube.

Every tile draws its randomness from a generator seeded by (seed, the tile's global position), so a tile
computed by two neighbouring regions, on any worker, gives the same result; overlapping tiles are
blended (``xterramind.products``, ``xterramind.stitch.BlendedPixels``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import xarray as xr

from . import products
from .arguments import flag, names, number, whole_number
from .engine import check_model, lay_out, provenance
from .errors import InputError, OptionError
from .facts import LULC_CLASSES, LULC_NODATA
from .models.handle import TerraMindModel
from .models.registry import ModalitySpec, resolve_modality, token_spec
from .models.sampling import Sampling, tile_seed
from .verb import PIXELS, Prepared, Verb

__all__ = ["GENERATE", "LULC_CLASSES", "LULC_NODATA", "generate", "prepare"]  # the constants: old import paths


def prepare(
    cube: xr.Dataset | xr.DataArray,
    model: TerraMindModel,
    *,
    targets: str | Sequence[str],
    seed: int = 0,
    modalities=None,
    top_k: int = 0,
    top_p: float = 0.8,
    temperature: float = 1.0,
    timesteps: int = 50,
    tile_size: int | None = None,
    overlap: int = 32,
    chunks: int | None = None,
    batch_size: int | None = None,
    blend: bool = True,
    probabilities: str | None = "float32",
    coords: bool = False,
    check_input: bool = True,
) -> Prepared:
    """Generating ``targets`` from the cube: a Dataset on the input's pixel grid (see the accessor). LULC's
    ``probabilities`` are stored as ``"float32"``, ``"uint8"`` (within 1/508, CF-packed) or not at all (``None``)."""
    check_model(model)
    specs, seed, blend = _targets(targets), whole_number("seed", seed), flag("blend", blend)
    probabilities = products.probabilities_option(probabilities)
    layout = lay_out(cube, model, modalities, tile_size=tile_size, overlap=overlap, chunks=chunks,
                     batch_size=batch_size, coords=coords, check_input=check_input)
    taken = {resolve_modality(name).name for name in layout.tiles.modalities}
    clash = [spec.name for spec in specs if spec.name.removeprefix("tok_") in taken]
    if clash:
        raise InputError(f"{clash} are inputs already; generate other modalities, or drop them from the inputs")
    sampling = Sampling(whole_number("top_k", top_k, 0), number("top_p", top_p, 0, 1),
                        number("temperature", temperature, 0), whole_number("timesteps", timesteps, 1))
    job = products.PixelJob(layout.tiles, tuple(spec.name for spec in specs), sampling, seed, blend, probabilities)
    attrs = provenance(model, layout.tiles.modalities + ("coords",) * coords, seed, layout) | {
        "top_k": sampling.top_k, "top_p": sampling.top_p, "temperature": sampling.temperature,
        "timesteps": sampling.timesteps, "blend": int(blend),
        "tokenizers": {spec.name.removeprefix("tok_"): model.tokenizer_weights_id(spec.name) for spec in specs}}
    return Prepared(GENERATE, layout, job, model, products.outputs(specs, probabilities),
                    lambda arrays: products.pixel_dataset(arrays, layout, layout.tiling.grid, specs, attrs))


def generate(cube: xr.Dataset | xr.DataArray, targets: str | Sequence[str], model: TerraMindModel, **options) -> xr.Dataset:
    """Lazily generate ``targets`` from the cube (see ``prepare`` and the accessor)."""
    return prepare(cube, model, targets=targets, **options).lazy()


def _targets(targets) -> list[ModalitySpec]:
    listed = names("targets", targets, "LULC")
    if not listed:
        raise OptionError("no targets: name what to generate, e.g. generate('LULC', model)")
    specs = [token_spec(name) for name in listed]
    if len({spec.name for spec in specs}) < len(specs):
        raise OptionError(f"targets repeat a modality: {listed}")
    return specs


def kernel(job: products.PixelJob, model: TerraMindModel, inputs: dict, batch) -> dict[str, torch.Tensor]:
    """A batch's decoded targets, as blended: LULC class probabilities, images standardized."""
    s = job.sampling
    seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
    decoded = model.generate(inputs, list(job.targets), seeds=seeds, top_k=s.top_k, top_p=s.top_p,
                             temperature=s.temperature, timesteps=s.timesteps)
    return {name: products.as_blended(name, value) for name, value in decoded.items()}


GENERATE = Verb("generate", prepare, kernel, PIXELS, products.blending, products.finish)
