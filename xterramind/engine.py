"""The lazy graph: one task per region (never per tile), batching tiles inside the task.

A region task gets the pixel windows of its tiles (region plus halo, read from the cube), cuts the
tiles, runs them through the model in batches on the worker's shared copy, and keeps from each
tile only the tokens it owns (see :mod:`xterramind.grid`). Nothing runs until the result is
computed or written.

Nodata: a pixel is valid when every band of every modality is finite and differs from its band's
declared nodata. Tiles without a valid pixel are skipped; in partial tiles the invalid pixels are
filled with the band's mean (0 after standardization), and tokens whose 16 x 16 patch has no valid
pixel come out NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import torch
import xarray as xr

from . import __version__
from .errors import InputError
from .grid import Region, Tiling, default_chunk, regions
from .modalities import ModalityInput, grid_of, resolve
from .models.handle import TerraMindModel

DEFAULT_BATCH = {"cpu": 8, "cuda": 64}


@dataclass(frozen=True)
class EmbedJob:
    """What every region task of one ``embed`` call shares (small and picklable)."""

    modalities: tuple[str, ...]
    nodata: tuple[tuple[float | None, ...], ...]
    tile: int  # tokens per tile side
    patch: int
    layer: int
    merge: str
    batch_size: int
    features: int


def embed(
    cube: xr.Dataset | xr.DataArray,
    model: TerraMindModel,
    modalities=None,
    *,
    layer: int = -1,
    merge: str = "mean",
    tile_size: int | None = None,
    overlap: int = 32,
    chunks: int | None = None,
    batch_size: int | None = None,
) -> xr.DataArray:
    """Lazily embed a cube: a DataArray ``embeddings`` with dims ``(time,) embedding, y, x`` on the token grid."""
    if not isinstance(model, TerraMindModel):
        raise InputError(f"model must come from xterramind.load_model(...), got {type(model).__name__}")
    if merge not in ("mean", "max", "concat"):
        raise InputError(f"merge must be 'mean', 'max' or 'concat' for a token grid, got {merge!r}")
    depth = model.config.encoder_depth
    if not -depth <= layer < depth:
        raise InputError(f"layer {layer} does not exist: {model.name} has {depth} encoder layers")
    inputs = resolve(cube, modalities)
    grid = grid_of(inputs[0].data, inputs[0].spec.name)
    tiling = Tiling(grid, model.config.image_size if tile_size is None else tile_size, overlap, model.config.patch_size)
    chunk = default_chunk(tiling) if chunks is None else chunks
    batch = DEFAULT_BATCH.get(model.device.type, 8) if batch_size is None else batch_size
    if batch < 1:
        raise InputError(f"batch_size must be at least 1, got {batch}")
    _check_in_memory_validity(inputs)
    job = EmbedJob(
        modalities=tuple(item.spec.name for item in inputs),
        nodata=tuple(item.nodata for item in inputs),
        tile=tiling.tile_size // tiling.patch,
        patch=tiling.patch,
        layer=layer % depth,
        merge=merge,
        batch_size=batch,
        features=model.config.dim * (len(inputs) if merge == "concat" else 1),
    )
    plan = regions(tiling, chunk)
    times = inputs[0].data.sizes.get("time")
    arrays = [_as_dask(item.data) for item in inputs]
    if times is None:
        data = _region_grid(arrays, plan, job, model, time=None)
    else:
        data = da.stack([_region_grid(arrays, plan, job, model, time=t) for t in range(times)])
    return _wrap(data, inputs, tiling, chunk, job, model, layer)


def _wrap(data: da.Array, inputs: list[ModalityInput], tiling: Tiling, chunk: int, job: EmbedJob, model, layer: int):
    tokens = tiling.tokens
    coords = {"embedding": np.arange(job.features), "y": tokens.y_coords(), "x": tokens.x_coords()}
    dims = ("embedding", "y", "x")
    if data.ndim == 4:
        dims = ("time", *dims)
        coords["time"] = inputs[0].data["time"].values
    attrs = provenance(model, job.modalities, seed=None) | {
        "product": "embeddings",
        "layer": layer,
        "merge": job.merge,
        "tile_size": tiling.tile_size,
        "overlap": tiling.overlap,
        "chunks": chunk,
        "patch_size": tiling.patch,
    }
    result = xr.DataArray(data, dims=dims, coords=coords, name="embeddings", attrs=attrs)
    return result.rio.write_crs(tokens.crs).rio.write_transform(tokens.transform)


def provenance(model: TerraMindModel, modalities, seed) -> dict:
    """The attributes every xterramind result carries."""
    attrs = {
        "xterramind_version": __version__,
        "model": model.name,
        "weights": model.weights_id,
        "modalities": list(modalities),
        "seed": "none" if seed is None else int(seed),
    }
    if model.is_random:
        attrs["warning"] = f"made with random weights (seed {model.recipe.seed}), not TerraMind's trained model"
    return attrs


def _as_dask(data: xr.DataArray) -> da.Array:
    return data.data if isinstance(data.data, da.Array) else da.from_array(data.data, chunks=-1)


def _region_grid(arrays, plan, job, model, time):
    rows = []
    for row in plan:
        blocks = []
        for region in row:
            windows = [_window(array, region, time) for array in arrays]
            shape = (job.features, *region.shape)
            task = dask.delayed(embed_region, pure=True)(*windows, region=region, job=job, model=model)
            blocks.append(da.from_delayed(task, shape=shape, dtype=np.float32))
        rows.append(blocks)
    return da.block(rows)


def _window(array: da.Array, region: Region, time):
    index = (slice(None), slice(*region.y.window), slice(*region.x.window))
    return array[(time, *index)] if time is not None else array[index]


def _check_in_memory_validity(inputs: list[ModalityInput]) -> None:
    """All-nodata input is caught at once when it is already in memory (dask inputs are never read here)."""
    if any(isinstance(item.data.data, da.Array) for item in inputs):
        return
    if not _valid_pixels([np.asarray(item.data.data) for item in inputs], [item.nodata for item in inputs]).any():
        raise InputError("the input has no valid pixel: every value is NaN or its band's nodata value")


def _valid_pixels(windows, nodata) -> np.ndarray:
    """``(..., y, x)`` bools: every band of every modality finite and not its nodata value."""
    valid = None
    for window, values in zip(windows, nodata, strict=True):
        ok = np.ones(window.shape[:-3] + window.shape[-2:], dtype=bool)
        for band, value in enumerate(values):
            pixels = window[..., band, :, :]
            if np.issubdtype(pixels.dtype, np.floating):
                ok &= np.isfinite(pixels)
            if value is not None and not np.isnan(value):
                ok &= pixels != value
        valid = ok if valid is None else valid & ok
    return valid


def embed_region(*windows: np.ndarray, region: Region, job: EmbedJob, model: TerraMindModel) -> np.ndarray:
    """Embed one region from its pixel windows ``(C, h, w)`` (one per modality, raw units)."""
    out = torch.full((job.features, *region.shape), float("nan"))
    valid = _valid_pixels(windows, job.nodata)
    if not valid.any():
        return out.numpy()
    pixels = [torch.from_numpy(np.ascontiguousarray(window)) for window in windows]
    mask = None if valid.all() else torch.from_numpy(valid)
    tiles = _tiles_with_data(region, valid, job)
    for start in range(0, len(tiles), job.batch_size):
        batch = tiles[start : start + job.batch_size]
        inputs = {name: _tile_batch(model, name, window, mask, batch, job) for name, window in zip(job.modalities, pixels, strict=True)}
        tokens = model.encode(inputs, merge=job.merge, layers=job.layer)
        tokens = tokens.transpose(1, 2).reshape(len(batch), job.features, job.tile, job.tile).cpu()
        for grid, (_, owned, target) in zip(tokens, batch, strict=True):
            out[(slice(None), *target)] = grid[(slice(None), *owned)]
    out[:, torch.from_numpy(_empty_tokens(valid, region, job.patch))] = float("nan")
    return out.numpy()


def _tile_batch(model: TerraMindModel, name: str, window: torch.Tensor, mask, batch, job: EmbedJob) -> torch.Tensor:
    """The batch's tiles of one modality, standardized on the model's device; invalid pixels at the band mean (0)."""
    p, size = job.patch, job.tile * job.patch
    crops = [(slice(y * p, y * p + size), slice(x * p, x * p + size)) for (y, x), _, _ in batch]
    tiles = torch.stack([window[(slice(None), *crop)] for crop in crops]).to(model.device).float()
    tiles = model.normalize(name, tiles)
    if mask is not None:
        keep = torch.stack([mask[crop] for crop in crops]).to(model.device)
        tiles.masked_fill_(~keep[:, None], 0.0)
    return tiles


def _tiles_with_data(region: Region, valid: np.ndarray, job: EmbedJob):
    """For each tile of the region with a valid pixel: its origin in the window, the tokens it owns
    (slices within the tile) and where they go (slices within the region), all in tokens."""
    p = job.patch
    first_y, first_x = region.y.window[0] // p, region.x.window[0] // p
    tiles = []
    for origin_y, start_y, stop_y in region.y.tiles:
        for origin_x, start_x, stop_x in region.x.tiles:
            y, x = origin_y - first_y, origin_x - first_x
            if not valid[y * p : (y + job.tile) * p, x * p : (x + job.tile) * p].any():
                continue
            owned = (slice(start_y - origin_y, stop_y - origin_y), slice(start_x - origin_x, stop_x - origin_x))
            target = (
                slice(start_y - region.y.tokens[0], stop_y - region.y.tokens[0]),
                slice(start_x - region.x.tokens[0], stop_x - region.x.tokens[0]),
            )
            tiles.append(((y, x), owned, target))
    return tiles


def _empty_tokens(valid: np.ndarray, region: Region, patch: int) -> np.ndarray:
    """The region's tokens whose ``patch`` x ``patch`` pixels are all invalid."""
    height, width = valid.shape[0] // patch, valid.shape[1] // patch
    empty = ~valid.reshape(height, patch, width, patch).any(axis=(1, 3))
    y = region.y.tokens[0] - region.y.window[0] // patch
    x = region.x.tokens[0] - region.x.window[0] // patch
    rows, cols = region.shape
    return np.ascontiguousarray(empty[y : y + rows, x : x + cols])
