"""What a verb is, declared once, and the one region loop that runs any verb.

A ``Verb`` (in the manner of flox's ``Aggregation``) says what differs between embed, tokenize, detokenize
and generate: its ``kernel`` on a batch of tiles, how its tiles are stitched (``stitch``: tokens owned by
the lattice, or pixels blended), how a stitched region becomes its output blocks (``finish``), and how
its options become a ``Prepared`` verb on one input (``prepare``). Everything else is the same for all
and written once in ``run_region``: valid pixels -> tiles with data -> batches -> kernel -> stitch -> finish
(the kernels on the model's device lane, ``xterramind.lane``, while the region prepares and stitches).

A ``Prepared`` verb is what the accessor, ``to_zarr`` and the area runner share: the layout of its
input, its region task, its outputs, and how blocks of those outputs become the georeferenced result.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from .engine import Layout, lazy_blocks
from .grid import Region, region_at, region_counts
from .halo import Plan, Share
from .lane import lane, run_ahead
from .models.handle import TerraMindModel
from .stitch import BlendedPixels, OwnedTokens
from .tiles import group_batches, tile_batches, tiles_with_data

TOKENS, PIXELS = "tokens", "pixels"  # how a verb's tiles are stitched
STITCHERS = {TOKENS: OwnedTokens, PIXELS: BlendedPixels}
PREPARED = "xterramind_prepared"  # in a lazy result's variables' encoding: the prepared verb behind them


@dataclass(frozen=True)
class Verb:
    """One verb, declared: the parts of ``run_region`` that are its own.

    Attributes:
        name: ``"embed"``, ``"tokenize"``, ``"detokenize"``, ``"generate"``, ``"predict"``.
        prepare: ``prepare(cube, model, **options) -> Prepared``: the options checked, the job made.
        kernel: ``kernel(job, model, inputs, batch) -> {output: (B, *leading, h, w) tensor}``, each tile's
            tokens (``TOKENS``) or pixels (``PIXELS``) of one batch of ``inputs`` by modality.
        stitch: ``TOKENS`` or ``PIXELS``.
        stitched: ``stitched(job) -> dict``: the stitcher's keywords, what it accumulates (``OwnedTokens``: per
            output its torch dtype, leading shape and nodata; ``BlendedPixels``: per output its channel count).
        finish: ``finish(job, model, result) -> {output: numpy block}`` from the stitcher's ``result``.
        takes: the model handle it runs: ``TerraMindModel`` (``load_model``) or ``TaskModel`` (``load_task``).
    """

    name: str
    prepare: Callable[..., Prepared]
    kernel: Callable
    stitch: str
    stitched: Callable
    finish: Callable
    takes: type = TerraMindModel

    @property
    def cover(self) -> bool:
        """Regions gather every tile overlapping them (blended pixels), not just the tiles owning their tokens."""
        return self.stitch == PIXELS


def run_region(*windows: np.ndarray, region: Region, verb: Verb, job, model: TerraMindModel,
               region_size: int | None = None, share: Share | None = None) -> dict[str, np.ndarray]:
    """Run ``verb`` on one region from its inputs' windows ``(C, h, w)`` (raw units; a token grid's ids).
    ``region_size``: the side of the layout's regions, by which its tiles are grouped (None: a region alone, its
    tiles in one group); ``share``: where it shares the groups astride its edges (``xterramind.halo``)."""
    tiles = job.tiles
    stitcher = STITCHERS[verb.stitch](region, tiles, **verb.stitched(job))
    valid = tiles.valid(windows)
    if valid.any():
        refs = tiles_with_data(region, valid, tiles)
        plan = Plan(refs, region, tiles.tiling, region_size, verb.cover, share)
        try:
            _stitch_in_order(stitcher, refs, plan, model, functools.partial(verb.kernel, job, model),
                             functools.partial(tile_batches, model, windows, valid, tiles=tiles), tiles.batch_for(model))
        except BaseException:
            plan.fail()  # the regions waiting for its groups run them themselves
            raise
    return verb.finish(job, model, stitcher.result(valid))


def _stitch_in_order(stitcher, refs: list, plan: Plan, model, kernel: Callable, cut: Callable, batch_size: int) -> None:
    """Add every tile to the stitcher in the lattice's order, run here or taken from another region's parcel: the
    same sums, bit for bit, whoever ran which group. The groups owed to others go to the device first, all at
    once, and are handed on from the device's thread as they are done (so no region ever waits for one that waits
    for it); the region's own groups follow, ``run_ahead`` of the stitching."""
    stream = cut([group.refs for group in plan.owing] + [group.refs for group in plan.own])
    device, handing = lane(model), functools.partial(_handing_on, kernel, plan)
    early = deque((batch, device.submit(handing, inputs, batch)) for batch, inputs in
                  itertools.islice(stream, len(group_batches([group.refs for group in plan.owing], batch_size))))
    later, back = run_ahead(model, kernel, stream), {}

    def arrived(batch, outputs) -> None:
        back.update((ref.index, {name: values[b : b + 1] for name, values in outputs.items()})
                    for b, ref in enumerate(batch))

    for ref in refs:
        parcel = plan.taken(ref)
        parts = parcel.wait() if parcel is not None else None
        if parts is not None:
            stitcher.add_part(ref, parts[ref.index])
            continue
        if parcel is not None and ref.index not in back:  # its region failed: the group run here, as it would have
            for batch, outputs in run_ahead(model, kernel, cut([plan.group_of[ref.index].refs])):
                arrived(batch, outputs)
        while ref.index not in back:
            if early:
                batch, done = early.popleft()
                arrived(batch, done.result())
            else:
                arrived(*next(later))
        stitcher.add([ref], back.pop(ref.index))


def _handing_on(kernel: Callable, plan: Plan, inputs, batch):
    """``kernel`` on a batch of a group owed to other regions, their parts handed on as soon as it is done."""
    try:
        outputs = kernel(inputs, batch)
    except BaseException:
        plan.fail(batch)
        raise
    plan.hand_on(batch, outputs)
    return outputs


def numpy_blocks(job, model: TerraMindModel, blocks: dict) -> dict[str, np.ndarray]:
    """The ``finish`` of token verbs: the stitched blocks as they are."""
    return {name: block.numpy() for name, block in blocks.items()}


@dataclass
class Prepared:
    """A verb made ready on one input: its layout, job and outputs, and how blocks of those outputs become
    the georeferenced result. ``lazy()`` is what the accessor returns; ``placeholder()`` has the same
    variables, shape, chunks and attributes with nothing behind them (a store template)."""

    verb: Verb
    layout: Layout
    job: object  # the verb's options for its kernel, with the layout's ``tiles`` (small, picklable)
    model: TerraMindModel
    outputs: dict[str, tuple]  # output -> (dtype, leading block shape)
    assemble: Callable[[dict[str, da.Array]], xr.DataArray | xr.Dataset]

    @property
    def cover(self) -> bool:
        return self.verb.cover

    @property
    def scale(self) -> int:
        """Output cells per token along each axis: the patch for pixel outputs."""
        return self.layout.tiling.patch if self.verb.stitch == PIXELS else 1

    @property
    def task(self) -> Callable:
        """The region task, ``task(*windows, region=) -> {output: block}``: picklable, the model as its recipe."""
        return functools.partial(run_region, verb=self.verb, job=self.job, model=self.model,
                                 region_size=self.layout.region_size)

    def region(self, row: int, col: int) -> Region:
        return region_at(self.layout.tiling, self.layout.region_size, row, col, self.cover)

    def lazy(self) -> xr.DataArray | xr.Dataset:
        result = self.assemble(lazy_blocks(self.layout, self.task, self.outputs, cover=self.cover, scale=self.scale))
        for variable in (result.data_vars.values() if isinstance(result, xr.Dataset) else [result]):
            variable.encoding[PREPARED] = Behind(self, variable.name, variable.data.name)  # to_zarr runs its stages
        return result

    def placeholder(self) -> xr.DataArray | xr.Dataset:
        layout = self.layout
        rows, cols = region_counts(layout.tiling, layout.region_size)
        height, width = layout.tiling.tokens.shape
        along = [tuple(min(layout.region_size, size - i * layout.region_size) * self.scale for i in range(count))
                 for size, count in ((height, rows), (width, cols))]
        times = () if layout.times is None else ((1,) * layout.times,)
        return self.assemble({name: da.zeros(tuple(map(sum, (*times, *((n,) for n in leading), *along))),
                                             chunks=(*times, *((n,) for n in leading), *along), dtype=dtype)
                              for name, (dtype, leading) in self.outputs.items()})


class Behind:
    """The prepared verb behind a lazy result's variable, the output it is, and the dask name its data had. Copies
    share it, and it pickles to nothing: a result sent elsewhere is written block by block, as any lazy result is."""

    def __init__(self, prepared: Prepared | None, output: str | None, name: str | None):
        self.prepared, self.output, self.name = prepared, output, name

    def __copy__(self) -> Behind:
        return self

    def __deepcopy__(self, memo) -> Behind:
        return self

    def __reduce__(self):
        return Behind, (None, None, None)

    def __repr__(self) -> str:
        return f"<xterramind {self.prepared.verb.name if self.prepared else 'nothing'} behind {self.name}>"


def prepared_behind(result: xr.DataArray | xr.Dataset) -> Prepared | None:
    """The prepared verb whose untouched lazy result this is (every variable's data as ``lazy()`` made it, under
    its output's own name; some outputs may be left out), else None: ``to_zarr`` then runs its region stages,
    not the dask graph."""
    variables = list(result.data_vars.values()) if isinstance(result, xr.Dataset) else [result]
    entries = [var.encoding.get(PREPARED) for var in variables]
    if not variables or not all(isinstance(entry, Behind) and entry.prepared for entry in entries):
        return None
    prepared = entries[0].prepared
    untouched = all(entry.prepared is prepared and isinstance(var.data, da.Array) and var.data.name == entry.name
                    and var.name == entry.output for var, entry in zip(variables, entries, strict=True))
    return prepared if untouched else None
