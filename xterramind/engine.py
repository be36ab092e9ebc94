"""A verb's inputs laid on their tile lattice, and the lazy graph: one task per region (never per tile).

``lay_out`` resolves a cube's modalities and lays tiles and regions over its pixel grid (a ``Layout``).
``lazy_blocks`` makes the dask arrays of a prepared verb: for each region (and time step), the inputs'
pixel windows (region plus halo) go to one region task (``xterramind.verb.run_region``), whose block of
every output becomes a chunk. Nothing runs until the result is computed or written.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import dask.array as da
import numpy as np

from .arguments import flag, whole_number
from .errors import NoValidDataError, OptionError
from .geo import grid_of
from .grid import PixelGrid, Region, Tiling, default_chunk, regions
from .modalities import ModalityInput, check_grid, check_units, resolve
from .models.handle import TerraMindModel
from .models.task_handle import TaskModel
from .tiles import DEFAULT_BATCH, Tiles
from .version import __version__

__all__ = ["DEFAULT_BATCH", "Layout", "check_model", "lay_out", "lazy_blocks", "provenance", "window"]


@dataclass
class Layout:
    """A verb's inputs on their tile lattice, and the side of its regions (the output chunks)."""

    inputs: list[ModalityInput]
    tiles: Tiles
    region_size: int  # tokens (the verbs' ``chunks=``)
    times: int | None = field(default=None)

    @property
    def tiling(self) -> Tiling:
        return self.tiles.tiling

    def time_coords(self) -> dict:
        return {"time": self.inputs[0].data["time"].values} if self.times is not None else {}


def check_model(model, kind: type = TerraMindModel) -> None:
    """``model`` is a handle of ``kind``: a ``TerraMindModel`` (``load_model``) or a ``TaskModel`` (``load_task``)."""
    if not isinstance(model, kind):
        if kind is TerraMindModel:
            hint = ("; a fine-tuned model from xterramind.load_task runs with predict" if isinstance(model, TaskModel)
                    else "")
            raise OptionError(f"model must come from xterramind.load_model(...), got {type(model).__name__}{hint}")
        hint = "; TerraMind itself runs with embed and generate" if isinstance(model, TerraMindModel) else ""
        raise OptionError(f"predict takes a fine-tuned model from xterramind.load_task(config, checkpoint), got "
                          f"{type(model).__name__}{hint}")


def lay_out(cube, model: TerraMindModel | TaskModel, modalities=None, *, tile_size=None, overlap=32, chunks=None,
            batch_size=None, coords: bool = False, inputs: list[ModalityInput] | None = None,
            grid: PixelGrid | None = None, check_input: bool = True, specs=None) -> Layout:
    """Resolve the cube's modalities and lay tiles and regions over its pixel grid.

    Pixels in degrees are refused; with ``check_input`` (the default) so are pixels far from the model's
    10 m and, for data in memory, implausible units (lazy data: each region task checks its window).
    Every verb comes through here, so the tiling options' types are checked here, before anything uses them.
    ``inputs`` and ``grid`` given: a token grid (detokenize) laid on the pixel grid it decodes to. ``specs``: the
    inputs as a fine-tuned model takes them (``modalities.resolve``).
    """
    check_model(model, type(model) if isinstance(model, TaskModel) else TerraMindModel)
    tile_size, chunks, batch_size = (whole_number(name, value, 1, optional=True) for name, value in
                                     (("tile_size", tile_size), ("chunks", chunks), ("batch_size", batch_size)))
    overlap = whole_number("overlap", overlap, 0)
    coords, check_input = flag("coords", coords), flag("check_input", check_input)
    token_input = inputs is not None
    inputs = resolve(cube, modalities, specs) if inputs is None else inputs
    grid = grid_of(inputs[0].data, inputs[0].spec.name) if grid is None else grid
    if inputs[0].spec.kind == "image":
        check_grid(grid, f"the {inputs[0].spec.name} cube", model.config.pixel_size, check_resolution=check_input)
    for item in inputs:
        if check_input and not token_input and not isinstance(item.data.data, da.Array):
            check_units(item.spec.name, np.asarray(item.data.data), item.nodata, item.spec)
    tiling = Tiling(grid, model.config.image_size if tile_size is None else tile_size, overlap, model.config.patch_size)
    if coords:
        model.coords_tokenizer()  # fail now, not in a worker, when the vocabulary is missing
    tiles = Tiles(tuple(item.spec.name for item in inputs), tuple(item.nodata for item in inputs), tiling, batch_size,
                  coords, check_input and not token_input, token_input,
                  tuple(item.spec for item in inputs))
    layout = Layout(inputs, tiles, default_chunk(tiling) if chunks is None else chunks, inputs[0].data.sizes.get("time"))
    _check_in_memory_validity(layout)
    return layout


def _check_in_memory_validity(layout: Layout) -> None:
    """All-nodata input is caught at once when the data is already in memory (dask inputs are never read
    here: region tasks check their own windows)."""
    inputs = layout.inputs
    if any(isinstance(item.data.data, da.Array) for item in inputs):
        return
    windows = [np.asarray(item.data.data) for item in inputs]
    if not layout.tiles.valid(windows).any():
        raise NoValidDataError("the input has no valid pixel: every value is NaN or its band's nodata value")


def input_arrays(layout: Layout) -> list[da.Array]:
    """The inputs as dask arrays ``((time,) band, y, x)``."""
    return [item.data.data if isinstance(item.data.data, da.Array) else da.from_array(item.data.data, chunks=-1)
            for item in layout.inputs]


def window(array: da.Array, region: Region, time: int | None, unit: int = 1) -> da.Array:
    """The region's window (region plus halo) of an input, in elements of ``unit`` pixels."""
    index = (slice(None), slice(region.y.window[0] // unit, region.y.window[1] // unit),
             slice(region.x.window[0] // unit, region.x.window[1] // unit))
    return array[(time, *index)] if time is not None else array[index]


def lazy_blocks(layout: Layout, task: Callable, outputs: dict[str, tuple], *, cover: bool, scale: int = 1
                ) -> dict[str, da.Array]:
    """Dask arrays, one per output, with one ``task(*windows, region=...)`` per region (and time step).

    ``task`` returns a dict with an array per output. ``outputs`` maps each output to ``(dtype, leading
    shape)``; a block is ``leading + region shape x scale`` (scale 16 for pixel outputs of token regions).
    """
    arrays, unit = input_arrays(layout), layout.tiles.window_unit
    layout_regions = regions(layout.tiling, layout.region_size, cover=cover)
    delayed_task = dask.delayed(task, pure=True)

    def for_time(time):
        rows = {name: [] for name in outputs}
        for row in layout_regions:
            blocks = {name: [] for name in outputs}
            for region in row:
                result = delayed_task(*(window(array, region, time, unit) for array in arrays), region=region)
                for name, (dtype, leading) in outputs.items():
                    part = dask.delayed(operator.getitem, pure=True)(result, name)
                    shape = (*leading, *(side * scale for side in region.shape))
                    blocks[name].append(da.from_delayed(part, shape=shape, dtype=dtype))
            for name in outputs:
                rows[name].append(blocks[name])
        return {name: da.block(rows[name]) for name in outputs}

    if layout.times is None:
        return for_time(None)
    per_time = [for_time(t) for t in range(layout.times)]
    return {name: da.stack([blocks[name] for blocks in per_time]) for name in outputs}


def provenance(model: TerraMindModel, modalities, seed, layout: Layout | None = None) -> dict:
    """The attributes every xterramind result carries."""
    attrs = {
        "xterramind_version": __version__,
        "model": model.name,
        "weights": model.weights_id,
        "modalities": list(modalities),
        "seed": "none" if seed is None else int(seed),
    }
    if layout is not None:
        tiling = layout.tiling
        attrs |= {"tile_size": tiling.tile_size, "overlap": tiling.overlap, "chunks": layout.region_size,
                  "patch_size": tiling.patch}
    if model.is_random:
        attrs["warning"] = f"made with random weights (seed {model.recipe.seed}), not TerraMind's trained model"
    return attrs
