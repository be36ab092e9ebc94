"""Pixel grids, the global tile lattice and regions: pure numpy, no xarray, no torch.

Everything is counted in tokens (one token = ``patch`` x ``patch`` pixels) along each axis. Tile
origins lie on one lattice anchored at the grid's origin, every output token has exactly one owner
tile (the one it is central in), and a region (an output chunk) gathers the tiles that own its tokens
(token outputs) or every tile overlapping it (``cover``: pixel outputs, blended). So results do not
depend on how the input or the output is chunked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from affine import Affine

from .errors import InputError


@dataclass(frozen=True)
class PixelGrid:
    """A north-up raster grid: CRS (as WKT), affine transform of the top-left corner, and shape."""

    crs: str
    transform: Affine
    height: int
    width: int

    def __post_init__(self):
        if self.transform.b != 0 or self.transform.d != 0:
            raise InputError("the grid is rotated or sheared; reproject it to a north-up grid first (rio.reproject)")

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def coarsened(self, factor: int) -> PixelGrid:
        """The grid of ``factor`` x ``factor`` blocks from the same origin (partial blocks dropped)."""
        return PixelGrid(self.crs, self.transform @ Affine.scale(factor), self.height // factor, self.width // factor)

    def refined(self, factor: int) -> PixelGrid:
        """The grid of ``factor`` x ``factor`` finer cells over the same extent (the pixels of a token grid)."""
        return PixelGrid(self.crs, self.transform @ Affine.scale(1 / factor), self.height * factor, self.width * factor)

    def x_coords(self) -> np.ndarray:
        return self.transform.c + self.transform.a * (np.arange(self.width) + 0.5)

    def y_coords(self) -> np.ndarray:
        return self.transform.f + self.transform.e * (np.arange(self.height) + 0.5)

    def same_as(self, other: PixelGrid, tolerance: float = 1e-6) -> bool:
        same_transform = np.allclose(tuple(self.transform)[:6], tuple(other.transform)[:6], rtol=0, atol=tolerance * abs(self.transform.a))
        return same_transform and self.shape == other.shape and same_crs(self.crs, other.crs)


def same_crs(a: str, b: str) -> bool:
    """Whether two CRS descriptions (WKT, EPSG codes, ...) mean the same CRS."""
    if a == b:
        return True
    from pyproj import CRS

    return CRS.from_user_input(a) == CRS.from_user_input(b)


@dataclass(frozen=True)
class AxisTiling:
    """Tiles along one axis of a token grid.

    Tile ``k`` owns the tokens ``[k * stride, (k + 1) * stride)``: its central ones, since its origin is
    ``k * stride - margin``. Tiles at the edges are shifted inward to stay on the grid (full real
    context, no padding) and keep owning their lattice range; tiles that end up at the same origin
    are merged. Regions whose size is a multiple of ``stride`` therefore never share a tile.
    """

    length: int  # tokens along the axis
    tile: int  # tokens per tile
    stride: int  # tokens between lattice tiles

    def __post_init__(self):
        if self.length < self.tile:
            raise InputError(f"the axis has {self.length} tokens, fewer than one tile of {self.tile}")

    @functools.cached_property
    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        starts = np.arange(0, self.length, self.stride)
        stops = np.minimum(starts + self.stride, self.length)
        origins = np.clip(starts - (self.tile - self.stride) // 2, 0, self.length - self.tile)
        first = np.flatnonzero(np.r_[True, origins[1:] != origins[:-1]])
        last = np.r_[first[1:] - 1, len(origins) - 1]
        return origins[first], np.stack([starts[first], stops[last]], axis=1)

    @property
    def origins(self) -> np.ndarray:
        """Tile origins, in tokens."""
        return self._layout[0]

    @property
    def owned(self) -> np.ndarray:
        """``(tiles, 2)``: the token range ``[start, stop)`` each tile owns; together they cover the axis once."""
        return self._layout[1]

    def tiles_owning(self, start: int, stop: int) -> np.ndarray:
        """Indices of the tiles that own at least one token of ``[start, stop)``."""
        owned = self.owned
        return np.nonzero((owned[:, 0] < stop) & (owned[:, 1] > start))[0]

    def tiles_covering(self, start: int, stop: int) -> np.ndarray:
        """Indices of the tiles that cover at least one token of ``[start, stop)``."""
        return np.nonzero((self.origins < stop) & (self.origins + self.tile > start))[0]

    def crop_weights(self, patch: int) -> np.ndarray:
        """``(tiles, tile * patch)``: 1 on the pixels of the tokens a tile owns, 0 elsewhere (no blending)."""
        weights = np.zeros((len(self.origins), self.tile * patch))
        for i, (origin, (start, stop)) in enumerate(zip(self.origins, self.owned, strict=True)):
            weights[i, (start - origin) * patch : (stop - origin) * patch] = 1.0
        return weights

    def blend_weights(self, patch: int) -> np.ndarray:
        """``(tiles, tile * patch)`` per-pixel weights for blending overlapping tile outputs.

        Where tile ``i`` overlaps its neighbour, its weight follows a raised cosine from about 0 at its
        edge to 1, and the neighbour's the complementary one; elsewhere it is 1. Where a third tile
        overlaps too (an edge tile shifted inward onto two others), the ramps are divided by their sum,
        so the weights of the tiles covering a pixel always add up to 1. Weights depend only on the
        global lattice, never on regions.
        """
        size = self.tile * patch
        pixels = np.arange(size) + 0.5
        weights = np.ones((len(self.origins), size))
        starts = self.origins * patch
        for i in range(len(starts) - 1):
            zone = (starts[i] + size) - starts[i + 1]  # pixels shared by tiles i and i + 1
            if zone <= 0:
                continue
            rising = 0.5 - 0.5 * np.cos(np.pi * np.clip(pixels[:zone] / zone, 0, 1))  # over the zone, in tile i+1
            weights[i + 1, :zone] *= rising
            weights[i, size - zone :] *= 1 - rising
        positions = starts[:, None] + np.arange(size)  # each tile pixel's place on the axis
        total = np.zeros(positions.max() + 1)
        np.add.at(total, positions, weights)
        return weights / total[positions]


@dataclass(frozen=True)
class Tiling:
    """The tile lattice of a pixel grid for a model with ``patch``-pixel tokens."""

    grid: PixelGrid
    tile_size: int = 224  # pixels
    overlap: int = 32  # pixels shared by neighbouring tiles
    patch: int = 16

    def __post_init__(self):
        unit = 2 * self.patch
        if self.tile_size % self.patch or self.tile_size <= 0:
            raise InputError(f"tile_size must be a positive multiple of {self.patch} px, got {self.tile_size}")
        if self.overlap % unit or not 0 <= self.overlap < self.tile_size:
            raise InputError(
                f"overlap must be a multiple of {unit} px (a whole token margin on each side) and smaller than "
                f"the tile, got {self.overlap}"
            )
        if min(self.grid.shape) < self.tile_size:
            raise InputError(
                f"the cube is {self.grid.height} x {self.grid.width} px, smaller than one {self.tile_size}-px tile; "
                f"use a larger area or pass a smaller tile_size (a multiple of {self.patch}, e.g. "
                f"{max(self.patch, min(self.grid.shape) // self.patch * self.patch)})"
            )

    @property
    def tokens(self) -> PixelGrid:
        """The output token grid: ``patch`` x the pixel size, the same origin."""
        return self.grid.coarsened(self.patch)

    @functools.cached_property
    def rows(self) -> AxisTiling:
        return AxisTiling(self.tokens.height, self.tile_size // self.patch, (self.tile_size - self.overlap) // self.patch)

    @functools.cached_property
    def cols(self) -> AxisTiling:
        return AxisTiling(self.tokens.width, self.tile_size // self.patch, (self.tile_size - self.overlap) // self.patch)

    @property
    def tile_count(self) -> int:
        return len(self.rows.origins) * len(self.cols.origins)


@dataclass(frozen=True)
class AxisSpan:
    """One axis of a region: its token range, its tiles (origin and owned range, clipped to the
    region, in tokens) and the pixel window those tiles read."""

    tokens: tuple[int, int]
    tiles: tuple[tuple[int, int, int], ...]  # (origin, start, stop): the tokens of the range the tile gives
    window: tuple[int, int]
    indices: tuple[int, ...] = ()  # the tiles' indices on the axis (for their blend weights)


def _span(axis: AxisTiling, start: int, stop: int, patch: int, cover: bool) -> AxisSpan:
    if cover:  # every tile that overlaps the range, with the part of the range it covers
        indices = axis.tiles_covering(start, stop)
        ranges = [(axis.origins[i], axis.origins[i] + axis.tile) for i in indices]
    else:  # the tiles owning tokens of the range, with the tokens they own
        indices = axis.tiles_owning(start, stop)
        ranges = [tuple(axis.owned[i]) for i in indices]
    tiles = tuple(
        (int(axis.origins[i]), max(int(first), start), min(int(last), stop)) for i, (first, last) in zip(indices, ranges, strict=True)
    )
    window = (tiles[0][0] * patch, (tiles[-1][0] + axis.tile) * patch)
    return AxisSpan((start, stop), tiles, window, tuple(int(i) for i in indices))


@dataclass(frozen=True)
class Region:
    """One output chunk: the tiles that own its tokens, along y and along x."""

    y: AxisSpan
    x: AxisSpan

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.tokens[1] - self.y.tokens[0], self.x.tokens[1] - self.x.tokens[0]

    @property
    def tile_count(self) -> int:
        return len(self.y.tiles) * len(self.x.tiles)


def regions(tiling: Tiling, region_size: int, cover: bool = False) -> list[list[Region]]:
    """Regions of ``region_size`` x ``region_size`` output tokens (ragged at the far edges), row by row. Each region
    lists the tiles owning its tokens, or with ``cover`` (blended pixel outputs) every tile overlapping it."""
    rows, cols = region_counts(tiling, region_size)
    columns = [column_span(tiling, region_size, col, cover) for col in range(cols)]
    return [[Region(row_span(tiling, region_size, row, cover), column) for column in columns] for row in range(rows)]


def region_at(tiling: Tiling, region_size: int, row: int, col: int, cover: bool = False) -> Region:
    """The region in row ``row`` and column ``col`` of ``regions``, without making the others."""
    return Region(row_span(tiling, region_size, row, cover), column_span(tiling, region_size, col, cover))


def region_counts(tiling: Tiling, region_size: int) -> tuple[int, int]:
    """How many regions of ``region_size`` tokens the token grid has along y and along x."""
    if region_size <= 0:
        raise InputError(f"chunks must be a positive number of tokens, got {region_size}")
    height, width = tiling.tokens.shape
    return -(-height // region_size), -(-width // region_size)


def row_span(tiling: Tiling, region_size: int, row: int, cover: bool = False) -> AxisSpan:
    """The y span of the regions in row ``row``."""
    start = row * region_size
    return _span(tiling.rows, start, min(start + region_size, tiling.tokens.height), tiling.patch, cover)


def column_span(tiling: Tiling, region_size: int, col: int, cover: bool = False) -> AxisSpan:
    """The x span of the regions in column ``col``."""
    start = col * region_size
    return _span(tiling.cols, start, min(start + region_size, tiling.tokens.width), tiling.patch, cover)


def default_chunk(tiling: Tiling, target: int = 128) -> int:
    """About ``target`` tokens, rounded down to a multiple of the tile stride so regions share no tile."""
    stride = tiling.rows.stride
    return max(stride, target // stride * stride)
