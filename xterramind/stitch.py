"""Stitching a region's block from its tiles' outputs: the two ways, one per kind of output.

- ``OwnedTokens``: token outputs (embeddings, token ids) keep, for each token, the tile that owns it on
  the lattice (the one it is most central in); tokens whose pixels were all invalid become nodata.
- ``BlendedPixels``: pixel outputs (class probabilities, generated images) are weighted means of every
  tile overlapping the pixel, with the lattice's raised-cosine blend weights
  (``AxisTiling.blend_weights``); pixels no tile reached, or whose input was invalid, become NaN.

Both take ``add(batch, outputs)`` with a batch's ``(B, *leading, h, w)`` tensors by output name, and
``result(valid)`` for the region; the region loop (``xterramind.verb.run_region``) need not know which.
"""

from __future__ import annotations

import numpy as np
import torch

from . import buffers
from .grid import Region
from .tiles import TileRef, Tiles, crop_to_region, empty_tokens


class OwnedTokens:
    """A token block per output, each token from the tile owning it; ``fills`` by output: its nodata."""

    def __init__(self, region: Region, tiles: Tiles, blocks: dict[str, tuple[torch.dtype, tuple, float]]):
        self.region, self.tiles = region, tiles
        self.blocks = {name: _filled((*leading, *region.shape), fill, dtype) for name, (dtype, leading, fill) in blocks.items()}
        self.fills = {name: fill for name, (_, _, fill) in blocks.items()}

    def add(self, batch: list[TileRef], outputs: dict[str, torch.Tensor]) -> None:
        for name, values in outputs.items():
            block, values = self.blocks[name], values.cpu()
            for grid, ref in zip(values, batch, strict=True):
                block[(..., *ref.place)] = grid[(..., *ref.part)]

    def result(self, valid: np.ndarray) -> dict[str, torch.Tensor]:
        empty = torch.from_numpy(empty_tokens(valid, self.region, self.tiles.patch))
        for name, block in self.blocks.items():
            block[..., empty] = self.fills[name]
        return self.blocks


class BlendedPixels:
    """Weighted sums of tile outputs over one region's pixels, by output: ``channels`` leading values each."""

    def __init__(self, region: Region, tiles: Tiles, channels: dict[str, int], blend: bool = True):
        self.region, self.tiles, p = region, tiles, tiles.patch
        height, width = (side * p for side in region.shape)
        self.sums = {name: torch.from_numpy(buffers.zeros((count, height, width), np.float32))
                     for name, count in channels.items()}
        self.weight = torch.from_numpy(buffers.zeros((height, width), np.float32))
        rows, cols = tiles.tiling.rows, tiles.tiling.cols
        # blend=False: every pixel from the tile owning its token (the seams show; for comparison)
        self.rows = torch.from_numpy(rows.blend_weights(p) if blend else rows.crop_weights(p)).float()
        self.cols = torch.from_numpy(cols.blend_weights(p) if blend else cols.crop_weights(p)).float()

    def add(self, batch: list[TileRef], outputs: dict[str, torch.Tensor]) -> None:
        outputs = {name: values.cpu() for name, values in outputs.items()}
        for b, ref in enumerate(batch):
            part = ref.pixels(ref.part, self.tiles.patch)
            self.add_part(ref, {name: values[b][(slice(None), *part)] for name, values in outputs.items()})

    def add_part(self, ref: TileRef, parts: dict[str, torch.Tensor]) -> None:
        """Add one tile's part of the region (``(C, h, w)`` by output: the tile cropped to ``ref.part``)."""
        p = self.tiles.patch
        (part_y, part_x), (place_y, place_x) = ref.pixels(ref.part, p), ref.pixels(ref.place, p)
        weight = torch.outer(self.rows[ref.index[0], part_y], self.cols[ref.index[1], part_x])
        for name, part in parts.items():
            self.sums[name][:, place_y, place_x].addcmul_(part, weight)  # no temporary
        self.weight[place_y, place_x] += weight

    def result(self, valid: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Weighted means, NaN where no tile contributed or the input pixel was invalid; and where they are not."""
        mask = torch.from_numpy(crop_to_region(valid, self.region, self.tiles.patch)) & (self.weight > 0)
        means = {}
        weight = self.weight.clamp(min=1e-12)
        for name, total in self.sums.items():
            means[name] = total.div_(weight).masked_fill_(~mask, float("nan"))  # in place: the sums are done
        return means, mask


def _filled(shape: tuple, fill: float, dtype: torch.dtype) -> torch.Tensor:
    """A block of ``fill``, its memory reused between regions (``xterramind.buffers``) where NumPy has the dtype."""
    if dtype == torch.bfloat16:
        return torch.full(shape, fill, dtype=dtype)
    return torch.from_numpy(buffers.empty(shape, torch.empty(0, dtype=dtype).numpy().dtype)).fill_(fill)
