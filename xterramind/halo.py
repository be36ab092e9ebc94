"""Tiles astride the edge of two regions: run once per process and handed to the other regions that need them.

A blended pixel verb's region needs every tile overlapping it, and a region edge cuts the lattice's blend
band: both regions need both tiles astride it, so inner regions would run 1.44 tiles per tile of the lattice
(12 x 12 for 10 x 10). A region's tiles are grouped by the regions that need them (its own tiles; an edge's,
needed by two; a corner's, by four), and a group is batched apart from the others: its batches are then the
same whichever of its regions runs them, so its outputs are too, bit for bit (a batch's values may depend on
what else is in it). Regions smaller than a tile share nothing: each of their tiles would be a group of its
own, run in batches of one. The first region of a group to come runs it and leaves each other region its part of
the group's tiles on the process's ``Shelf``; a region finding its part there takes it instead.

A region adds its tiles to the blend in the lattice's order, run or taken, so the result is what the same
region gives alone (``to_zarr`` and ``compute()`` agree exactly), whichever region ran which group, in any
order, on any worker, after any retry. No deadlock: a region submits the groups it owes others to the device
before anything else, and the device's thread hands each on as its last batch is done, whatever the region
is waiting for. A part that never comes (its region failed) or left the shelf (over ``SHELF_BYTES``, oldest
first) costs only time: the region runs the group itself, with the same result.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from . import runtime
from .grid import Region, Tiling, column_span, region_counts, row_span
from .tiles import TileRef

SHELF_BYTES = 512 * 2**20  # LULC parts of a strip's lower edge: ~2 MB per tile, 80 tiles a row of it
STRIP = 8  # region columns per strip


def new_scope() -> str:
    """A name for the tiles of one write (one store or zone): no part of another write is ever taken."""
    return uuid.uuid4().hex


def in_strips(indices, strip: int = STRIP) -> list:
    """Region indices ``((time,) row, col)`` in strips of ``strip`` columns, each strip row by row: a region's
    upper and left neighbours came shortly before it, so their parts are still on the shelf."""
    return sorted(indices, key=lambda index: (*index[:-2], index[-1] // strip, index[-2], index[-1]))


@dataclass(frozen=True)
class Share:
    """Where a region's parts go: one write's ``scope``, and the region's time step (``()`` without time)."""

    scope: str
    time: tuple = ()


class Parcel:
    """One group's parts for one region, by tile index: filled when the group is done, or marked failed (None)."""

    def __init__(self):
        self.ready, self.parts, self.nbytes = threading.Event(), None, 0

    def wait(self) -> dict | None:
        self.ready.wait()
        return self.parts


class Shelf:
    """The process's parcels waiting for their regions, by ``(scope, time, group, region)``."""

    def __init__(self, limit: int = SHELF_BYTES):
        self.lock, self.parcels, self.nbytes, self.limit = threading.Lock(), OrderedDict(), 0, limit

    def settle(self, mine, theirs: list) -> tuple[Parcel | None, list[Parcel]]:
        """One group of a region, in one step (two regions never both run it): the parcel another region left
        under ``mine``, taken off the shelf; or, when there is none, new empty parcels under ``theirs``."""
        with self.lock:
            parcel = self.parcels.pop(mine, None)
            if parcel is not None:
                self.nbytes -= parcel.nbytes
                return parcel, []
            parcels = [Parcel() for _ in theirs]
            self.parcels.update(zip(theirs, parcels, strict=True))
            return None, parcels

    def fill(self, key, parcel: Parcel, parts: dict | None) -> None:
        """Put ``parts`` in the parcel (None: its group failed) and wake whoever waits for it, once; the oldest
        parcels leave the shelf while it holds more than its limit."""
        with self.lock:
            if parcel.ready.is_set():
                return
            parcel.parts = parts
            if parts is not None and self.parcels.get(key) is parcel:
                parcel.nbytes = sum(part.nbytes for tile in parts.values() for part in tile.values())
                self.nbytes += parcel.nbytes
            while self.nbytes > self.limit:
                self.nbytes -= self.parcels.popitem(last=False)[1].nbytes
            parcel.ready.set()

    def forget(self, scope: str) -> None:
        """Drop the parcels of one write (it is over: the regions they wait for will not come)."""
        with self.lock:
            for key in [key for key in self.parcels if key[0] == scope]:
                self.nbytes -= self.parcels.pop(key).nbytes


def shelf() -> Shelf:
    return runtime.shared(("halo",), Shelf)


def forget(scope: str | None) -> None:
    if scope is not None:
        shelf().forget(scope)


@dataclass
class Group:
    """Tiles of a region needed by the same regions (``members``, the region's own index among them), in the
    lattice's order; with what the region does with them: run them (``owed``: the parcels it fills for the other
    members, by member) or take them (``parcel``)."""

    members: tuple
    refs: list[TileRef]
    owed: dict = field(default_factory=dict)  # member -> (key, parcel)
    parcel: Parcel | None = None
    parts: dict = field(default_factory=dict)  # member -> {tile index: {output: part}} while the group runs


class Plan:
    """A region's tiles in groups (``xterramind.halo``): those it runs, those it takes, the parcels it owes."""

    def __init__(self, refs: list[TileRef], region: Region, tiling: Tiling, region_size: int | None, cover: bool,
                 share: Share | None):
        alone = region_size is None or region_size < tiling.tile_size // tiling.patch  # small: a group per tile
        me = (0, 0) if alone else (region.y.tokens[0] // region_size, region.x.tokens[0] // region_size)
        self.regions = {me: region} if alone else around(me, tiling, region_size, cover)
        self.patch = tiling.patch
        share = None if alone else share
        by_members = {}
        for ref in refs:
            members = tuple(index for index, other in self.regions.items() if part_in(other, ref.index) is not None)
            by_members.setdefault(members, []).append(ref)
        self.groups = [Group(members, group) for members, group in by_members.items()]
        self.group_of = {ref.index: group for group in self.groups for ref in group.refs}
        self.shelf = shelf() if share is not None else None
        for group in self.groups if share is not None else ():
            if len(group.members) == 1:
                continue
            key = (share.scope, share.time, group.members)
            others = [member for member in group.members if member != me]
            group.parcel, parcels = self.shelf.settle((*key, me), [(*key, member) for member in others])
            if group.parcel is None:
                group.owed = {member: ((*key, member), parcel) for member, parcel in zip(others, parcels, strict=True)}

    @property
    def owing(self) -> list[Group]:
        """The groups it runs for others too: submitted first."""
        return [group for group in self.groups if group.owed]

    @property
    def own(self) -> list[Group]:
        """The groups it runs for itself alone (its own tiles, and groups it may not share)."""
        return [group for group in self.groups if not group.owed and group.parcel is None]

    def taken(self, ref: TileRef) -> Parcel | None:
        return self.group_of[ref.index].parcel

    def hand_on(self, batch: list[TileRef], outputs: dict[str, torch.Tensor]) -> None:
        """Keep each other member's part of a batch of an owed group (on the device's thread, as it is done), in
        pixels as the blend adds them; fill their parcels once the group's last tile is in."""
        group = self.group_of[batch[0].index]
        for member, (key, parcel) in group.owed.items():
            parts = group.parts.setdefault(member, {})
            for b, ref in enumerate(batch):
                pixels = TileRef.pixels(part_in(self.regions[member], ref.index), self.patch)
                parts[ref.index] = {name: values[b][(..., *pixels)].cpu().clone() for name, values in outputs.items()}
            if len(parts) == len(group.refs):
                self.shelf.fill(key, parcel, group.parts.pop(member))

    def fail(self, batch: list[TileRef] | None = None) -> None:
        """Mark the parcels not yet filled (of ``batch``'s group, or all) failed: their regions run them."""
        groups = [self.group_of[batch[0].index]] if batch else self.owing
        for group in groups:
            for key, parcel in group.owed.values():
                self.shelf.fill(key, parcel, None)


def around(me: tuple[int, int], tiling: Tiling, region_size: int, cover: bool) -> dict:
    """The region ``me`` and every region sharing a tile with it, by index (more than the 8 around it when regions
    are smaller than a tile); ``cover``: regions need every tile overlapping them, else the tiles owning their
    tokens."""
    rows, cols = region_counts(tiling, region_size)
    along_y = _sharing(lambda r: row_span(tiling, region_size, r, cover), me[0], rows)
    along_x = _sharing(lambda c: column_span(tiling, region_size, c, cover), me[1], cols)
    return {(r, c): Region(y, x) for r, y in along_y.items() for c, x in along_x.items()}


def _sharing(span_of, at: int, count: int) -> dict:
    """The spans of ``at`` and of the regions along one axis whose tiles overlap its own, by index, in order."""
    mine = span_of(at)
    found = {at: mine}
    for step in (-1, 1):
        other = at + step
        while 0 <= other < count and set((span := span_of(other)).indices) & set(mine.indices):
            found[other] = span
            other += step
    return dict(sorted(found.items()))


def part_in(region: Region, index: tuple[int, int]) -> tuple[slice, slice] | None:
    """The part (tokens of the tile) of lattice tile ``index`` that ``region`` stitches, or None if it has none."""
    slices = []
    for span, i in zip((region.y, region.x), index, strict=True):
        if i not in span.indices:
            return None
        origin, start, stop = span.tiles[span.indices.index(i)]
        slices.append(slice(start - origin, stop - origin))
    return tuple(slices)
