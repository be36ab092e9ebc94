"""Generation verbs on the engine's regions: ``generate``, ``tokenize`` and ``detokenize``.

Pixel outputs are blended: every tile overlapping a region contributes, weighted by a raised-cosine
ramp across the pixels it shares with its neighbours (``AxisTiling.blend_weights``). LULC blends
class probabilities (each tile's softmax) and takes the argmax after blending; images blend pixels.
Every tile draws its randomness from a generator seeded by (seed, the tile's global position), so a
tile computed by two neighbouring regions, on any worker, gives the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from affine import Affine

from .arguments import flag, names, number, whole_number
from .engine import (
    Plan,
    Tiles,
    Verb,
    _bind,
    batches,
    check_in_memory_validity,
    check_model,
    crop_to_region,
    empty_tokens,
    georeferenced,
    plan,
    provenance,
    standardized_batches,
    tiles_with_data,
    time_coords,
    valid_pixels,
)
from .errors import InputError
from .grid import PixelGrid, Region
from .modalities import ModalityInput, grid_of
from .models.generation import Sampling, tile_seed
from .models.handle import TerraMindModel
from .models.registry import MODALITIES, ModalitySpec, resolve_modality, token_spec

LULC_CLASSES = ("no data", "water", "trees", "flooded vegetation", "crops", "built area", "bare ground",
                "snow/ice", "clouds", "rangeland")
LULC_NODATA = 0
TOKEN_NODATA = -1


def _pixel_spec(token: ModalitySpec) -> tuple[str, tuple[str, ...]]:
    """The pixel product of a token modality: its name and band names."""
    name = token.name.removeprefix("tok_")
    raw = next((spec for spec in MODALITIES.values() if spec.name == name and spec.kind == "image"), None)
    return name, raw.bands if raw else (name,)


def _channels(targets: Sequence[str]) -> dict[str, int]:
    """What a tile's decoded output holds per target: class probabilities for LULC, else the bands."""
    channels = {}
    for target in targets:
        name, bands = _pixel_spec(resolve_modality(target))
        channels[name] = len(LULC_CLASSES) if name == "LULC" else len(bands)
    return channels


def _outputs(targets: Sequence[ModalitySpec]) -> dict[str, tuple]:
    """Per output variable: dtype and leading block shape."""
    outputs = {}
    for spec in targets:
        name, bands = _pixel_spec(spec)
        if name == "LULC":
            outputs |= {"LULC": (np.uint8, ()), "LULC_probability": (np.float32, (len(LULC_CLASSES),))}
        else:
            outputs[name] = (np.float32, (len(bands),))
    return outputs


@dataclass(frozen=True)
class PixelJob:
    tiles: Tiles
    targets: tuple[str, ...]  # token modalities, e.g. ("tok_S1GRD", "tok_LULC")
    sampling: Sampling
    seed: int
    blend: bool = True  # False: every pixel from the tile owning its token (seams show; for comparison)


class _Blend:
    """Accumulates tile outputs over one region's pixels with the lattice's blend weights."""

    def __init__(self, region: Region, tiles: Tiles, channels: dict[str, int], blend: bool = True):
        self.region, self.tiles, p = region, tiles, tiles.patch
        height, width = (side * p for side in region.shape)
        self.sums = {name: torch.zeros(count, height, width) for name, count in channels.items()}
        self.weight = torch.zeros(height, width)
        rows, cols = tiles.tiling.rows, tiles.tiling.cols
        self.rows = torch.from_numpy(rows.blend_weights(p) if blend else rows.crop_weights(p)).float()
        self.cols = torch.from_numpy(cols.blend_weights(p) if blend else cols.crop_weights(p)).float()

    def add(self, ref, outputs: dict[str, torch.Tensor]) -> None:
        p = self.tiles.patch
        (source_y, source_x), (target_y, target_x) = ref.pixels(ref.source, p), ref.pixels(ref.target, p)
        weight = torch.outer(self.rows[ref.index[0], source_y], self.cols[ref.index[1], source_x])
        for name, value in outputs.items():
            self.sums[name][:, target_y, target_x] += weight * value[:, source_y, source_x]
        self.weight[target_y, target_x] += weight

    def result(self, valid: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Weighted means, NaN where no tile contributed or the input pixel was invalid."""
        mask = torch.from_numpy(valid) & (self.weight > 0)
        means = {}
        for name, total in self.sums.items():
            mean = total / self.weight.clamp(min=1e-12)
            mean[:, ~mask] = float("nan")
            means[name] = mean
        return means, mask


def _finish(model: TerraMindModel, means: dict[str, torch.Tensor], mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Blended standardized outputs -> products: LULC classes and probabilities, images in physical units."""
    out = {}
    for name, mean in means.items():
        if name == "LULC":
            classes = torch.where(mask, mean.nan_to_num(-1.0).argmax(dim=0), LULC_NODATA)
            out |= {"LULC": classes.to(torch.uint8).numpy(), "LULC_probability": mean.numpy()}
        else:
            out[name] = model.denormalize(name, mean).numpy()
    return out


def _as_product(name: str, value: torch.Tensor) -> torch.Tensor:
    """A tile's decoded output as what is blended: LULC logits become probabilities."""
    return torch.softmax(value, dim=1) if name == "LULC" else value


# -- generate -----------------------------------------------------------------------------------------


def generate_verb(
    cube: xr.Dataset | xr.DataArray,
    targets: str | Sequence[str],
    model: TerraMindModel,
    *,
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
    coords: bool = False,
    check_input: bool = True,
) -> Verb:
    """Generating ``targets`` from the cube: a Dataset on the input's pixel grid (see the accessor)."""
    check_model(model)
    specs, seed, blend = _targets(targets), whole_number("seed", seed), flag("blend", blend)
    work = plan(cube, model, modalities, tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                coords=coords, check_input=check_input)
    taken = {resolve_modality(name).name for name in work.tiles.modalities}
    clash = [spec.name for spec in specs if spec.name.removeprefix("tok_") in taken]
    if clash:
        raise InputError(f"{clash} are inputs already; generate other modalities, or drop them from the inputs")
    check_in_memory_validity(work.inputs)
    sampling = _sampling(top_k, top_p, temperature, timesteps)
    job = PixelJob(work.tiles, tuple(spec.name for spec in specs), sampling, seed, blend)
    attrs = provenance(model, work.tiles.modalities + ("coords",) * coords, seed, work) | _sampling_attrs(sampling)
    attrs["blend"] = int(blend)
    attrs["tokenizers"] = {spec.name.removeprefix("tok_"): model.tokenizer_weights_id(spec.name) for spec in specs}
    return Verb(work, _bind(generate_region, job=job, model=model), _outputs(specs),
                lambda arrays: _pixel_dataset(arrays, work, work.tiling.grid, specs, attrs), cover=True,
                scale=work.tiling.patch)


def generate(cube: xr.Dataset | xr.DataArray, targets: str | Sequence[str], model: TerraMindModel, **options) -> xr.Dataset:
    """Lazily generate ``targets`` from the cube (see ``generate_verb`` and the accessor)."""
    return generate_verb(cube, targets, model, **options).lazy()


def _targets(targets) -> list[ModalitySpec]:
    listed = names("targets", targets, "LULC")
    if not listed:
        raise InputError("no targets: name what to generate, e.g. generate('LULC', model)")
    specs = [token_spec(name) for name in listed]
    if len({spec.name for spec in specs}) < len(specs):
        raise InputError(f"targets repeat a modality: {listed}")
    return specs


def _sampling(top_k, top_p, temperature, timesteps) -> Sampling:
    return Sampling(whole_number("top_k", top_k, 0), number("top_p", top_p, 0, 1),
                    number("temperature", temperature, 0), whole_number("timesteps", timesteps, 1))


def _sampling_attrs(sampling: Sampling) -> dict:
    return {"top_k": sampling.top_k, "top_p": sampling.top_p, "temperature": sampling.temperature,
            "timesteps": sampling.timesteps}


def generate_region(*windows: np.ndarray, region: Region, job: PixelJob, model: TerraMindModel) -> dict[str, np.ndarray]:
    """Generate one region's pixels from its input windows."""
    tiles, s = job.tiles, job.sampling
    blend = _Blend(region, tiles, _channels(job.targets), job.blend)
    valid = valid_pixels(windows, tiles.nodata)
    if valid.any():
        refs = tiles_with_data(region, valid, tiles)
        for batch, inputs in standardized_batches(model, windows, valid, refs, tiles):
            seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
            decoded = model.generate(inputs, list(job.targets), seeds=seeds, top_k=s.top_k, top_p=s.top_p,
                                     temperature=s.temperature, timesteps=s.timesteps)
            outputs = {name: _as_product(name, value).cpu() for name, value in decoded.items()}
            for b, ref in enumerate(batch):
                blend.add(ref, {name: value[b] for name, value in outputs.items()})
    return _finish(model, *blend.result(crop_to_region(valid, region, tiles.patch)))


def _pixel_dataset(arrays, work: Plan, pixel_grid: PixelGrid, specs, attrs) -> xr.Dataset:
    tokens = work.tiling.tokens
    grid = PixelGrid(pixel_grid.crs, pixel_grid.transform, tokens.height * work.tiling.patch, tokens.width * work.tiling.patch)
    time = ("time",) * (work.times is not None)
    variables = {}  # dims and attributes; coordinates come with the dataset
    for spec in specs:
        name, bands = _pixel_spec(spec)
        if name == "LULC":
            variables["LULC"] = xr.DataArray(arrays["LULC"], dims=(*time, "y", "x"), attrs={
                "long_name": "land use / land cover class", "flag_values": list(range(len(LULC_CLASSES))),
                "flag_meanings": " ".join(c.replace(" ", "_").replace("/", "_") for c in LULC_CLASSES),
                "nodata": LULC_NODATA})
            variables["LULC_probability"] = xr.DataArray(
                arrays["LULC_probability"], dims=(*time, "class", "y", "x"), coords={"class": np.arange(len(LULC_CLASSES))},
                attrs={"long_name": "class probability, blended across tiles", "class_names": list(LULC_CLASSES)})
        else:
            units = next((s.units for s in MODALITIES.values() if s.name == name), "")
            variables[name] = xr.DataArray(arrays[name], dims=(*time, f"{name}_band", "y", "x"),
                                           attrs={"units": units, "band_names": list(bands)})
    dataset = xr.Dataset(variables, coords=time_coords(work))
    dataset.attrs = attrs | {"product": "generation", "targets": [_pixel_spec(s)[0] for s in specs]}
    for var in dataset.data_vars.values():
        var.attrs |= {k: v for k, v in attrs.items() if k not in var.attrs}
    return georeferenced(dataset, grid)


# -- tokenize -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenJob:
    tiles: Tiles
    modality: str  # the tokenizer's input modality, e.g. "S2L2A"


def tokenize_verb(cube, modality: str, model: TerraMindModel, *, tile_size=None, overlap=32, chunks=None,
                  batch_size=None, check_input: bool = True) -> Verb:
    """Tokenizing one modality of the cube: int32 tokens ``(time,) y, x`` on the token grid, -1 where a
    token's pixels are all nodata."""
    check_model(model)
    spec = token_spec(modality)
    name = spec.name.removeprefix("tok_")
    if name not in {s.name for s in MODALITIES.values() if s.kind == "image"}:
        raise InputError(f"tokenize reads {name} from a cube only for S2L2A, S1GRD, S1RTC and DEM; for {name} "
                         "tensors use model.tokenize()")
    work = plan(cube, model, [name], tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                check_input=check_input)
    check_in_memory_validity(work.inputs)
    job = TokenJob(work.tiles, name)
    attrs = provenance(model, [name], None, work) | {
        "product": "tokens", "tokenizer": name, "tokenizer_weights": model.tokenizer_weights_id(name),
        "vocab_size": spec.vocab_size, "nodata": TOKEN_NODATA}

    def assemble(arrays):
        dims = ("time",) * (work.times is not None) + ("y", "x")
        result = xr.DataArray(arrays["tokens"], dims=dims, coords=time_coords(work), name="tokens", attrs=attrs)
        return georeferenced(result, work.tiling.tokens)

    return Verb(work, _bind(tokenize_region, job=job, model=model), {"tokens": (np.int32, ())}, assemble)


def tokenize(cube, modality: str, model: TerraMindModel, **options) -> xr.DataArray:
    """Lazily tokenize one modality of the cube (see ``tokenize_verb`` and the accessor)."""
    return tokenize_verb(cube, modality, model, **options).lazy()


def tokenize_region(*windows: np.ndarray, region: Region, job: TokenJob, model: TerraMindModel) -> dict[str, np.ndarray]:
    tiles = job.tiles
    out = torch.full(region.shape, TOKEN_NODATA, dtype=torch.int32)
    valid = valid_pixels(windows, tiles.nodata)
    if not valid.any():
        return {"tokens": out.numpy()}
    refs = tiles_with_data(region, valid, tiles)
    for batch, inputs in standardized_batches(model, windows, valid, refs, tiles):
        tokens = model.tokenize(job.modality, inputs[job.modality]).cpu()
        for grid, ref in zip(tokens, batch, strict=True):
            out[ref.target] = grid[ref.source]
    out[torch.from_numpy(empty_tokens(valid, region, tiles.patch))] = TOKEN_NODATA
    return {"tokens": out.numpy()}


# -- detokenize ---------------------------------------------------------------------------------------


def detokenize(tokens: xr.DataArray, modality: str, model: TerraMindModel, *, seed: int = 0, timesteps: int = 50,
               tile_size=None, overlap=32, chunks=None, batch_size=None) -> xr.Dataset:
    """Lazily decode a token grid into pixels of ``modality`` on the 16x finer pixel grid."""
    check_model(model)
    spec, seed = token_spec(modality), whole_number("seed", seed)
    if not isinstance(tokens, xr.DataArray) or not {"y", "x"} <= set(tokens.dims):
        raise InputError("detokenize needs a DataArray of token ids with dims (y, x), as tokenize() returns")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise InputError(f"token ids must be integers, got {tokens.dtype}")
    token_grid = grid_of(tokens, "the token grid")
    patch = model.config.patch_size
    grid = PixelGrid(token_grid.crs, token_grid.transform * Affine.scale(1 / patch), token_grid.height * patch,
                     token_grid.width * patch)
    order = [d for d in ("time", "y", "x") if d in tokens.dims]
    data = tokens.transpose(*order).expand_dims("band", axis=len(order) - 2)
    inputs = [ModalityInput(spec, data, (float(TOKEN_NODATA),))]
    work = plan(None, model, tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                inputs=inputs, grid=grid)
    sampling = _sampling(0, 0.0, 1.0, timesteps)
    job = PixelJob(work.tiles, (spec.name,), sampling, seed)
    attrs = provenance(model, [spec.name], seed, work) | {"timesteps": sampling.timesteps}
    attrs["tokenizers"] = {spec.name.removeprefix("tok_"): model.tokenizer_weights_id(spec.name)}
    return Verb(work, _bind(detokenize_region, job=job, model=model), _outputs([spec]),
                lambda arrays: _pixel_dataset(arrays, work, grid, [spec], attrs), cover=True, scale=patch,
                window_unit=patch).lazy()


def detokenize_region(window: np.ndarray, *, region: Region, job: PixelJob, model: TerraMindModel) -> dict[str, np.ndarray]:
    """Decode one region's pixels from its token window ``(1, h, w)``."""
    tiles, p = job.tiles, job.tiles.patch
    name, _ = _pixel_spec(resolve_modality(job.targets[0]))
    blend = _Blend(region, tiles, _channels(job.targets))
    ids = torch.from_numpy(np.ascontiguousarray(window[0])).long()
    valid = np.repeat(np.repeat((window[0] >= 0), p, axis=0), p, axis=1)
    if valid.any():
        refs = tiles_with_data(region, valid, tiles)
        for batch in batches(refs, tiles.batch_for(model)):
            grids = torch.stack([ids[y : y + tiles.tile, x : x + tiles.tile] for y, x in (r.window_origin for r in batch)])
            seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
            decoded = _as_product(name, model.detokenize(name, grids.clamp(min=0), seeds=seeds,
                                                         timesteps=job.sampling.timesteps)).cpu()
            for b, ref in enumerate(batch):
                blend.add(ref, {name: decoded[b]})
    return _finish(model, *blend.result(crop_to_region(valid, region, p)))

