"""Inside a region task: which pixels are valid, which tiles have data, and their batches for the model.

A region task gets its inputs' windows (the region plus halo, raw units) and cuts them into the tiles the
lattice gives the region. Nodata: a pixel is valid when every band of every modality is finite and differs
from its band's declared nodata (a token input: where its token id is not negative). Tiles without a valid
pixel are skipped; in partial tiles the invalid pixels are filled with the band's mean (0 after
standardization). Positions are in tokens unless a name says pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import buffers
from .geo import transformer
from .grid import Region, Tiling
from .modalities import check_units
from .models.handle import TerraMindModel

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
    token_input: bool = False  # the one input is a token grid (detokenize): windows are in tokens, not pixels
    specs: tuple = ()  # each input as the model takes it (bands, statistics): what its units are checked against

    def batch_for(self, model: TerraMindModel) -> int:
        """Tiles per forward pass on ``model``'s device (decided in the task, where the device is known)."""
        return self.batch_size or DEFAULT_BATCH.get(model.device.type, 8)

    @property
    def tile_tokens(self) -> int:
        """Tokens per tile side (``tiling.tile_size`` is in pixels)."""
        return self.tiling.tile_size // self.tiling.patch

    @property
    def patch(self) -> int:
        return self.tiling.patch

    @property
    def window_unit(self) -> int:
        """Pixels per window element: 1, or the patch for a token grid."""
        return self.patch if self.token_input else 1

    def valid(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """``(..., y, x)`` bools on the pixel grid: where every input is valid."""
        if self.token_input:
            ids = windows[0][..., 0, :, :] >= 0
            return np.repeat(np.repeat(ids, self.patch, axis=-2), self.patch, axis=-1)
        return valid_pixels(windows, self.nodata)


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
    """One tile of a region: its origin in the window and on the global lattice, the part of the tile it
    gives and the place of that part in the region's block, and its lattice indices (all in tokens)."""

    window_origin: tuple[int, int]
    origin: tuple[int, int]
    part: tuple[slice, slice]
    place: tuple[slice, slice]
    index: tuple[int, int]

    @staticmethod
    def pixels(slices: tuple[slice, slice], patch: int) -> tuple[slice, slice]:
        return tuple(slice(s.start * patch, s.stop * patch) for s in slices)


def tiles_with_data(region: Region, valid: np.ndarray, tiles: Tiles) -> list[TileRef]:
    """The region's tiles that have at least one valid pixel."""
    p, size = tiles.patch, tiles.tile_tokens
    first_y, first_x = region.y.window[0] // p, region.x.window[0] // p
    found = []
    for index_y, (origin_y, start_y, stop_y) in zip(region.y.indices, region.y.tiles, strict=True):
        for index_x, (origin_x, start_x, stop_x) in zip(region.x.indices, region.x.tiles, strict=True):
            y, x = origin_y - first_y, origin_x - first_x
            if not valid[y * p : (y + size) * p, x * p : (x + size) * p].any():
                continue
            part = (slice(start_y - origin_y, stop_y - origin_y), slice(start_x - origin_x, stop_x - origin_x))
            place = (slice(start_y - region.y.tokens[0], stop_y - region.y.tokens[0]),
                     slice(start_x - region.x.tokens[0], stop_x - region.x.tokens[0]))
            found.append(TileRef((y, x), (origin_y, origin_x), part, place, (index_y, index_x)))
    return found


def batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def group_batches(groups: Sequence[list[TileRef]], size: int) -> list[list[TileRef]]:
    """Each group's tiles in batches of at most ``size``, in order; no batch mixes two groups."""
    return [batch for group in groups for batch in batches(group, size)]


def tile_batches(model: TerraMindModel, windows, valid: np.ndarray, groups: Sequence[list[TileRef]], tiles: Tiles):
    """Yield ``(refs, inputs)``: each batch of tiles and its inputs on the model's device, by modality:
    standardized pixels, or for a token input its ``(B, h, w)`` ids. A batch never mixes two ``groups`` of tiles
    (``xterramind.halo``: a group's batches are then the same whichever region runs them)."""
    grouped = group_batches(groups, tiles.batch_for(model))
    if tiles.token_input:
        ids, size = torch.from_numpy(np.ascontiguousarray(windows[0][0])).long(), tiles.tile_tokens
        for batch in grouped:
            grids = torch.stack([ids[y : y + size, x : x + size] for y, x in (ref.window_origin for ref in batch)])
            yield batch, {tiles.modalities[0]: grids.clamp(min=0)}
        return
    if tiles.check_input:
        specs = tiles.specs or (None,) * len(windows)
        for name, window, nodata, spec in zip(tiles.modalities, windows, tiles.nodata, specs, strict=True):
            check_units(name, window, nodata, spec)
    pixels = [torch.from_numpy(np.ascontiguousarray(window)) for window in windows]
    mask = None if valid.all() else torch.from_numpy(valid)
    for batch in grouped:
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
    lon, lat = transformer(tiling.grid.crs, "EPSG:4326").transform(x, y)
    return np.stack([lon, lat], axis=1)


def _tile_batch(model: TerraMindModel, name: str, window: torch.Tensor, mask, batch, tiles: Tiles) -> torch.Tensor:
    """One modality's tiles of a batch, standardized on the model's device; invalid pixels at the band mean (0)."""
    p, size = tiles.patch, tiles.tile_tokens * tiles.patch
    crops = [(slice(y * p, y * p + size), slice(x * p, x * p + size)) for y, x in (ref.window_origin for ref in batch)]
    raw = [window[(slice(None), *crop)] for crop in crops]
    if model.device.type == "cpu":  # the host is the device: each crop made float as it is copied, in one pass
        stacked = torch.from_numpy(buffers.empty((len(raw), len(window), size, size), np.float32))
        for tile, crop in zip(stacked, raw, strict=True):
            tile.copy_(crop)
    else:  # raw units cross to the device, floats are made there
        stacked = _to_device(torch.stack(raw), model.device).to(torch.float32)
    stacked = model.normalize(name, stacked, inplace=True)
    if mask is not None:
        keep = _to_device(torch.stack([mask[crop] for crop in crops]), model.device)
        stacked.masked_fill_(~keep[:, None], 0.0)
    return stacked


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to a GPU from pinned memory without blocking (the host goes on cutting)."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


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
