"""Hypothesis strategies for the tile lattice (``xterramind.grid``): axis lengths, tile sizes, overlaps, chunk
sizes and pixel grids, within the bounds ``Tiling`` accepts (in the manner of flox's tests/strategies.py)."""

from __future__ import annotations

import functools

import hypothesis.strategies as st
from affine import Affine

from xterramind.grid import AxisTiling, PixelGrid, Tiling

PATCH = 16  # pixels per token side, every TerraMind model's
PIXEL = 10.0  # metres, Sentinel-2's and the models'
MAX_EXTRA = 40  # tokens beyond one tile: grids stay small enough to check token by token

# tokens per tile side: 1 (16 px) up to 16 (256 px), the official 14 (224 px) drawn more often
tile_tokens = st.integers(1, 16) | st.just(14)
tile_sizes = tile_tokens.map(lambda tokens: tokens * PATCH)


def overlaps(tile_size: int) -> st.SearchStrategy[int]:
    """Overlaps ``Tiling`` accepts for this tile: multiples of 2 x ``PATCH`` (a whole token margin on each side)
    from 0 up to below the tile itself."""
    return st.integers(0, (tile_size - 1) // (2 * PATCH)).map(lambda margins: margins * 2 * PATCH)


def axis_lengths(tile: int, max_extra: int = MAX_EXTRA) -> st.SearchStrategy[int]:
    """Tokens along an axis with room for at least one ``tile``-token tile."""
    return st.integers(tile, tile + max_extra)


def chunks(stride: int, length: int) -> st.SearchStrategy[int]:
    """Region sides in tokens: any size up to past the whole axis, or a multiple of the stride (``default_chunk``'s)."""
    return st.integers(1, length + 3) | st.integers(1, max(1, length // stride + 1)).map(lambda n: n * stride)


@st.composite
def axis_tilings(draw: st.DrawFn, max_extra: int = MAX_EXTRA) -> AxisTiling:
    """One axis of a tiling, with the stride ``Tiling`` derives from a tile size and an overlap."""
    tile_size = draw(tile_sizes)
    overlap = draw(overlaps(tile_size))
    tile = tile_size // PATCH
    return AxisTiling(draw(axis_lengths(tile, max_extra)), tile, (tile_size - overlap) // PATCH)


@functools.cache
def _wkt(epsg: int) -> str:
    from pyproj import CRS

    return CRS.from_epsg(epsg).to_wkt()


# WGS 84 / UTM, every zone, north (326xx) and south (327xx), as the WKT grids carry
utm_epsg_codes = st.builds(lambda zone, south: (32700 if south else 32600) + zone, st.integers(1, 60), st.booleans())
utm_crss = utm_epsg_codes.map(_wkt)


@st.composite
def ten_metre_transforms(draw: st.DrawFn) -> Affine:
    """North-up 10 m transforms with their top-left corner anywhere in a UTM zone: on the 10 m grid, half a pixel
    off it, or at any metre."""
    easting = draw(st.integers(16_600, 83_400)) * PIXEL + draw(st.sampled_from([0.0, PIXEL / 2, 3.0]))
    northing = draw(st.integers(10, 1_000_000)) * PIXEL + draw(st.sampled_from([0.0, PIXEL / 2, 7.0]))
    return Affine(PIXEL, 0.0, easting, 0.0, -PIXEL, northing)


@st.composite
def pixel_grids(draw: st.DrawFn, min_side: int = PATCH, max_side: int = PATCH * 24) -> PixelGrid:
    """UTM grids of 10 m pixels, any number of pixels per side (not only whole tokens)."""
    side = st.integers(min_side, max_side)
    return PixelGrid(draw(utm_crss), draw(ten_metre_transforms()), draw(side), draw(side))


@st.composite
def tilings(draw: st.DrawFn, max_extra: int = MAX_EXTRA) -> Tiling:
    """A tiling of a pixel grid with room for at least one tile, any tile size and overlap it accepts."""
    tile_size = draw(tile_sizes)
    overlap = draw(overlaps(tile_size))
    grid = draw(pixel_grids(tile_size, tile_size + max_extra * PATCH + PATCH - 1))
    return Tiling(grid, tile_size, overlap, PATCH)
