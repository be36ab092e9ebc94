"""The lazy graph: one task per region (never per tile), batching tiles inside the task.

A region task gets the pixel windows of its tiles (region plus halo, read from the cube), cuts the
tiles, runs them through the model in batches on the worker's shared copy, and assembles its block:
token outputs keep each tile's own tokens (``xterramind.grid``), pixel outputs blend overlapping
tiles with a smooth window. Nothing runs until the result is computed or written.

Nodata: a pixel is valid when every band of every modality is finite and differs from its band's
declared nodata. Tiles without a valid pixel are skipped; in partial tiles the invalid pixels are
filled with the band's mean (0 after standardization), and outputs where the input had no valid
pixel (a token's 16 x 16 patch, or the pixel itself) come out as nodata.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import torch
import xarray as xr

from . import __version__
from .arguments import flag, names, whole_number
from .errors import InputError
from .grid import PixelGrid, Region, Tiling, default_chunk, region_counts, regions
from .modalities import ModalityInput, check_grid, check_units, grid_of, resolve
from .models.generation import Sampling, tile_seed
from .models.handle import TerraMindModel
from .models.registry import token_spec

DEFAULT_BATCH = {"cpu": 8, "cuda": 64}


@dataclass(frozen=True)
class Tiles:
    """What every region task of one call needs to cut and standardize its tiles (small, picklable)."""

    modalities: tuple[str, ...]
    nodata: tuple[tuple[float | None, ...], ...]
    tiling: Tiling
    batch_size: int | None  # None: the default of the device the task runs on (a worker's GPU, not the driver's CPU)
    coords: bool = False  # also give every tile its centre's longitude and latitude (the coords modality)
    check_input: bool = True  # region tasks check the units of their windows (check_units)

    def batch_for(self, model: TerraMindModel) -> int:
        """Tiles per forward pass on ``model``'s device (decided in the task, where the device is known)."""
        return self.batch_size or DEFAULT_BATCH.get(model.device.type, 8)

    @property
    def tile(self) -> int:  # tokens per tile side
        return self.tiling.tile_size // self.tiling.patch

    @property
    def patch(self) -> int:
        return self.tiling.patch


@dataclass
class Plan:
    """A verb's inputs on their tile lattice."""

    inputs: list[ModalityInput]
    tiles: Tiles
    chunk: int  # output chunk (region) side, in tokens
    times: int | None = field(default=None)

    @property
    def tiling(self) -> Tiling:
        return self.tiles.tiling


@dataclass
class Verb:
    """A verb made ready to run: its plan, its region task and its outputs, and how blocks of those
    outputs become the georeferenced result. ``lazy()`` is what the accessor returns; ``placeholder()``
    has the same variables, shape, chunks and attributes with nothing behind them (a store template)."""

    plan: Plan
    task: Callable  # task(*windows, region=) -> {output: block}
    outputs: dict[str, tuple]  # output -> (dtype, leading block shape)
    assemble: Callable[[dict[str, da.Array]], xr.DataArray | xr.Dataset]
    cover: bool = False  # regions gather every tile overlapping them (blended pixel outputs)
    scale: int = 1  # output cells per token along each axis (the patch size for pixel outputs)
    window_unit: int = 1

    def lazy(self) -> xr.DataArray | xr.Dataset:
        return self.assemble(lazy_blocks(self.plan, self.task, self.outputs, cover=self.cover, scale=self.scale,
                                         window_unit=self.window_unit))

    def placeholder(self) -> xr.DataArray | xr.Dataset:
        rows, cols = region_counts(self.plan.tiling, self.plan.chunk)
        height, width = self.plan.tiling.tokens.shape
        along = [tuple(min(self.plan.chunk, size - i * self.plan.chunk) * self.scale for i in range(count))
                 for size, count in ((height, rows), (width, cols))]
        times = () if self.plan.times is None else ((1,) * self.plan.times,)
        return self.assemble({name: da.zeros(tuple(map(sum, (*times, *((n,) for n in leading), *along))),
                                             chunks=(*times, *((n,) for n in leading), *along), dtype=dtype)
                              for name, (dtype, leading) in self.outputs.items()})


def check_model(model) -> None:
    if not isinstance(model, TerraMindModel):
        raise InputError(f"model must come from xterramind.load_model(...), got {type(model).__name__}")


def plan(cube, model: TerraMindModel, modalities=None, *, tile_size=None, overlap=32, chunks=None,
         batch_size=None, coords: bool = False, inputs: list[ModalityInput] | None = None,
         grid: PixelGrid | None = None, check_input: bool = True) -> Plan:
    """Resolve the cube's modalities and lay tiles and regions over its pixel grid.

    Pixels in degrees are refused; with ``check_input`` (the default) so are pixels far from the model's
    10 m and, for data in memory, implausible units (lazy data: each region task checks its window).
    Every verb comes through here, so the tiling options' types are checked here, before anything uses them.
    """
    check_model(model)
    tile_size, chunks, batch_size = (whole_number(name, value, 1, optional=True) for name, value in
                                     (("tile_size", tile_size), ("chunks", chunks), ("batch_size", batch_size)))
    overlap = whole_number("overlap", overlap, 0)
    coords, check_input = flag("coords", coords), flag("check_input", check_input)
    inputs = resolve(cube, modalities) if inputs is None else inputs
    grid = grid_of(inputs[0].data, inputs[0].spec.name) if grid is None else grid
    if inputs[0].spec.kind == "image":
        check_grid(grid, f"the {inputs[0].spec.name} cube", model.config.pixel_size, check_resolution=check_input)
    for item in inputs:
        if check_input and not isinstance(item.data.data, da.Array):
            check_units(item.spec.name, np.asarray(item.data.data), item.nodata)
    tiling = Tiling(grid, model.config.image_size if tile_size is None else tile_size, overlap, model.config.patch_size)
    if coords:
        model.coords_tokenizer()  # fail now, not in a worker, when the vocabulary is missing
    tiles = Tiles(tuple(item.spec.name for item in inputs), tuple(item.nodata for item in inputs), tiling, batch_size,
                  coords, check_input)
    return Plan(inputs, tiles, default_chunk(tiling) if chunks is None else chunks, inputs[0].data.sizes.get("time"))


def lazy_blocks(plan: Plan, task: Callable, outputs: dict[str, tuple], *, cover: bool, scale: int = 1,
                window_unit: int = 1) -> dict[str, da.Array]:
    """Dask arrays, one per output, with one ``task(*windows, region=...)`` per region (and time step).

    ``task`` returns a dict with an array per output. ``outputs`` maps each output to ``(dtype,
    leading shape)``; a block is ``leading + region shape x
    scale`` (scale 16 for pixel outputs of token regions). Windows are the inputs' pixel windows, in
    units of ``window_unit`` pixels (16 when the input itself is a token grid).
    """
    arrays = [item.data.data if isinstance(item.data.data, da.Array) else da.from_array(item.data.data, chunks=-1)
              for item in plan.inputs]
    layout = regions(plan.tiling, plan.chunk, cover=cover)
    delayed_task = dask.delayed(task, pure=True)

    def for_time(time):
        rows = {name: [] for name in outputs}
        for row in layout:
            blocks = {name: [] for name in outputs}
            for region in row:
                windows = [_window(array, region, time, window_unit) for array in arrays]
                result = delayed_task(*windows, region=region)
                for name, (dtype, leading) in outputs.items():
                    part = dask.delayed(operator.getitem, pure=True)(result, name)
                    shape = (*leading, *(side * scale for side in region.shape))
                    blocks[name].append(da.from_delayed(part, shape=shape, dtype=dtype))
            for name in outputs:
                rows[name].append(blocks[name])
        return {name: da.block(rows[name]) for name in outputs}

    if plan.times is None:
        return for_time(None)
    per_time = [for_time(t) for t in range(plan.times)]
    return {name: da.stack([blocks[name] for blocks in per_time]) for name in outputs}


def _window(array: da.Array, region: Region, time, unit: int):
    index = (slice(None), slice(region.y.window[0] // unit, region.y.window[1] // unit),
             slice(region.x.window[0] // unit, region.x.window[1] // unit))
    return array[(time, *index)] if time is not None else array[index]


def georeferenced(data: xr.DataArray, grid: PixelGrid) -> xr.DataArray:
    """Attach the grid's coordinates, CRS and transform to a ``(..., y, x)`` DataArray."""
    data = data.assign_coords(y=grid.y_coords(), x=grid.x_coords())
    return data.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def time_coords(plan: Plan) -> dict:
    return {"time": plan.inputs[0].data["time"].values} if plan.times is not None else {}


def provenance(model: TerraMindModel, modalities, seed, plan: Plan | None = None) -> dict:
    """The attributes every xterramind result carries."""
    attrs = {
        "xterramind_version": __version__,
        "model": model.name,
        "weights": model.weights_id,
        "modalities": list(modalities),
        "seed": "none" if seed is None else int(seed),
    }
    if plan is not None:
        tiling = plan.tiling
        attrs |= {"tile_size": tiling.tile_size, "overlap": tiling.overlap, "chunks": plan.chunk, "patch_size": tiling.patch}
    if model.is_random:
        attrs["warning"] = f"made with random weights (seed {model.recipe.seed}), not TerraMind's trained model"
    return attrs


def check_in_memory_validity(inputs: list[ModalityInput]) -> None:
    """All-nodata input is caught at once when the data is already in memory (dask inputs are never read
    here: region tasks check their own windows; ``plan`` checks units)."""
    if any(isinstance(item.data.data, da.Array) for item in inputs):
        return
    if not valid_pixels([np.asarray(item.data.data) for item in inputs], [item.nodata for item in inputs]).any():
        raise InputError("the input has no valid pixel: every value is NaN or its band's nodata value")


# -- inside a region task -----------------------------------------------------------------------------


def valid_pixels(windows, nodata) -> np.ndarray:
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


@dataclass(frozen=True)
class TileRef:
    """One tile of a region, in tokens: its origin in the window and on the global lattice, the slices
    of the tile it contributes and where they go in the region's block, and its lattice indices."""

    window_origin: tuple[int, int]
    origin: tuple[int, int]
    source: tuple[slice, slice]
    target: tuple[slice, slice]
    index: tuple[int, int]

    def pixels(self, slices: tuple[slice, slice], patch: int) -> tuple[slice, slice]:
        return tuple(slice(s.start * patch, s.stop * patch) for s in slices)


def tiles_with_data(region: Region, valid: np.ndarray, tiles: Tiles) -> list[TileRef]:
    """The region's tiles that have at least one valid pixel."""
    p, size = tiles.patch, tiles.tile
    first_y, first_x = region.y.window[0] // p, region.x.window[0] // p
    found = []
    for index_y, (origin_y, start_y, stop_y) in zip(region.y.indices, region.y.tiles, strict=True):
        for index_x, (origin_x, start_x, stop_x) in zip(region.x.indices, region.x.tiles, strict=True):
            y, x = origin_y - first_y, origin_x - first_x
            if not valid[y * p : (y + size) * p, x * p : (x + size) * p].any():
                continue
            source = (slice(start_y - origin_y, stop_y - origin_y), slice(start_x - origin_x, stop_x - origin_x))
            target = (slice(start_y - region.y.tokens[0], stop_y - region.y.tokens[0]),
                      slice(start_x - region.x.tokens[0], stop_x - region.x.tokens[0]))
            found.append(TileRef((y, x), (origin_y, origin_x), source, target, (index_y, index_x)))
    return found


def batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def standardized_batches(model: TerraMindModel, windows, valid: np.ndarray, refs: list[TileRef], tiles: Tiles):
    """Yield ``(refs, inputs)``: each batch of tiles and its standardized inputs on the model's device."""
    if tiles.check_input:
        for name, window, nodata in zip(tiles.modalities, windows, tiles.nodata, strict=True):
            check_units(name, window, nodata)
    pixels = [torch.from_numpy(np.ascontiguousarray(window)) for window in windows]
    mask = None if valid.all() else torch.from_numpy(valid)
    for batch in batches(refs, tiles.batch_for(model)):
        inputs = {name: _tile_batch(model, name, window, mask, batch, tiles)
                  for name, window in zip(tiles.modalities, pixels, strict=True)}
        if tiles.coords:
            inputs["coords"] = model.tokenize_coords(tile_centres(tiles.tiling, [ref.origin for ref in batch]))
        yield batch, inputs


def tile_centres(tiling: Tiling, origins) -> np.ndarray:
    """``(B, 2)`` longitude and latitude of the centres of the tiles at these lattice origins (tokens)."""
    centre = (np.asarray(origins, dtype=np.float64) * tiling.patch + tiling.tile_size / 2)  # (row, col) pixels
    transform = tiling.grid.transform
    x = transform.c + transform.a * centre[:, 1]
    y = transform.f + transform.e * centre[:, 0]
    lon, lat = _to_lonlat(tiling.grid.crs).transform(x, y)
    return np.stack([lon, lat], axis=1)


@functools.cache
def _to_lonlat(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def _tile_batch(model: TerraMindModel, name: str, window: torch.Tensor, mask, batch, tiles: Tiles) -> torch.Tensor:
    """One modality's tiles of a batch, standardized on the model's device; invalid pixels at the band mean (0)."""
    p, size = tiles.patch, tiles.tile * tiles.patch
    crops = [(slice(y * p, y * p + size), slice(x * p, x * p + size)) for y, x in (ref.window_origin for ref in batch)]
    stacked = torch.stack([window[(slice(None), *crop)] for crop in crops]).to(model.device).float()
    stacked = model.normalize(name, stacked)
    if mask is not None:
        keep = torch.stack([mask[crop] for crop in crops]).to(model.device)
        stacked.masked_fill_(~keep[:, None], 0.0)
    return stacked


def empty_tokens(valid: np.ndarray, region: Region, patch: int) -> np.ndarray:
    """The region's tokens whose ``patch`` x ``patch`` pixels are all invalid."""
    height, width = valid.shape[0] // patch, valid.shape[1] // patch
    empty = ~valid.reshape(height, patch, width, patch).any(axis=(1, 3))
    return crop_to_region(empty, region, patch, cell=patch)


def crop_to_region(array: np.ndarray, region: Region, patch: int, cell: int = 1) -> np.ndarray:
    """The region's part of a ``(..., y, x)`` array laid over the region's window, one element per
    ``cell`` pixels (1: a pixel array; ``patch``: a token array)."""
    y = (region.y.tokens[0] * patch - region.y.window[0]) // cell
    x = (region.x.tokens[0] * patch - region.x.window[0]) // cell
    rows, cols = (side * patch // cell for side in region.shape)
    return np.ascontiguousarray(array[..., y : y + rows, x : x + cols])


# -- embed ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedJob:
    tiles: Tiles
    layer: int
    merge: str
    features: int
    tim: tuple[str, ...] = ()
    seed: int = 0
    sampling: Sampling = field(default_factory=Sampling)


def embed_verb(
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
) -> Verb:
    """Embedding a cube: a DataArray ``embeddings`` with dims ``(time,) embedding, y, x`` on the token grid.
    ``check_input=False`` lets pass pixels far from 10 m and values that look like a unit mistake."""
    check_model(model)
    if merge not in ("mean", "max", "concat"):
        raise InputError(f"merge must be 'mean', 'max' or 'concat' for a token grid, got {merge!r}")
    depth = model.config.encoder_depth
    layer, seed = whole_number("layer", layer), whole_number("seed", seed)
    if not -depth <= layer < depth:
        raise InputError(f"layer {layer} does not exist: {model.name} has {depth} encoder layers")
    work = plan(cube, model, modalities, tile_size=tile_size, overlap=overlap, chunks=chunks, batch_size=batch_size,
                coords=coords, check_input=check_input)
    check_in_memory_validity(work.inputs)
    thinking = tuple(token_spec(name).name for name in names("tim", tim, "LULC"))
    grids = len(work.inputs) + len(thinking)
    job = EmbedJob(work.tiles, layer % depth, merge, model.config.dim * (grids if merge == "concat" else 1),
                   thinking, seed)
    attrs = provenance(model, work.tiles.modalities + ("coords",) * coords + thinking, seed if thinking else None, work)
    attrs |= {"product": "embeddings", "layer": layer, "merge": merge} | ({"tim": list(thinking)} if thinking else {})

    def assemble(arrays):
        dims = ("time",) * (work.times is not None) + ("embedding", "y", "x")
        result = xr.DataArray(arrays["embeddings"], dims=dims, name="embeddings", attrs=attrs,
                              coords={"embedding": np.arange(job.features), **time_coords(work)})
        return georeferenced(result, work.tiling.tokens)

    return Verb(work, _bind(embed_region, job=job, model=model), {"embeddings": (np.float32, (job.features,))}, assemble)


def embed(cube: xr.Dataset | xr.DataArray, model: TerraMindModel, modalities=None, **options) -> xr.DataArray:
    """Lazily embed a cube (see ``embed_verb`` and the accessor)."""
    return embed_verb(cube, model, modalities, **options).lazy()




def _bind(function, **bound):
    """``function`` with keyword arguments bound, as a picklable, tokenizable dask task."""
    return functools.partial(function, **bound)


def embed_region(*windows: np.ndarray, region: Region, job: EmbedJob, model: TerraMindModel) -> dict[str, np.ndarray]:
    """Embed one region from its pixel windows ``(C, h, w)`` (one per modality, raw units)."""
    tiles, out = job.tiles, torch.full((job.features, *region.shape), float("nan"))
    valid = valid_pixels(windows, tiles.nodata)
    if not valid.any():
        return {"embeddings": out.numpy()}
    refs = tiles_with_data(region, valid, tiles)
    for batch, inputs in standardized_batches(model, windows, valid, refs, tiles):
        if job.tim:  # Thinking-in-Modalities: generate these token grids first and encode them too
            seeds = [tile_seed(job.seed, *ref.origin) for ref in batch]
            s = job.sampling
            inputs |= {f"tok_{name}": grid for name, grid in model.generate(
                inputs, list(job.tim), seeds=seeds, top_k=s.top_k, top_p=s.top_p, temperature=s.temperature,
                decode=False).items()}
        tokens = model.encode(inputs, merge=job.merge, layers=job.layer)
        tokens = tokens.transpose(1, 2).reshape(len(batch), job.features, tiles.tile, tiles.tile).cpu()
        for grid, ref in zip(tokens, batch, strict=True):
            out[(slice(None), *ref.target)] = grid[(slice(None), *ref.source)]
    out[:, torch.from_numpy(empty_tokens(valid, region, tiles.patch))] = float("nan")
    return {"embeddings": out.numpy()}
