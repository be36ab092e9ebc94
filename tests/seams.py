"""A seam metric for tiled pixel outputs (a test helper: the tests of stitching measure seams with it).

Tiles meet along the lattice's ownership boundaries (every ``stride`` pixels). A seam is a jump at
such a boundary that the map does not have just beside it. For a ``(C, H, W)`` map (class
probabilities, or an image):

    step(a, b)   = sum over channels of |value(a) - value(b)| for two neighbouring pixels a, b
    across       = mean step over the pixel pairs that straddle a tile boundary
    beside       = mean step over the other pairs less than ``width`` pixels from a boundary
    seam excess  = across / beside

A map without seams scores about 1; the raised-cosine blend of two disagreeing tiles at most about 1.6
(the ramp is steepest in its middle); a hard cut between disagreeing tiles scores far above. Pixels with
NaN are left out. Comparing with pixels beside the boundary, not the whole map, keeps natural edges
elsewhere in the scene from hiding or inventing seams.
"""

from __future__ import annotations

import numpy as np

from xterramind.grid import Tiling


def boundaries(tiling: Tiling) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows and columns where one tile's ownership ends and the next begins."""
    p = tiling.patch
    return tiling.rows.owned[1:, 0] * p, tiling.cols.owned[1:, 0] * p


def seam_excess(values: np.ndarray, rows, cols, width: int = 16) -> float:
    """The seam excess of a ``(C, H, W)`` map with the given boundary rows and columns (module doc)."""
    values = np.asarray(values, dtype=np.float64)
    across, beside = [], []
    for axis, cuts in ((1, rows), (2, cols)):
        steps = np.moveaxis(np.abs(np.diff(values, axis=axis)).sum(axis=0), axis - 1, 0)  # pair i: (i, i + 1)
        for cut in cuts:
            near = [i for i in range(max(cut - 1 - width, 0), min(cut - 1 + width + 1, len(steps))) if i != cut - 1]
            across.append(steps[cut - 1].ravel())
            beside.append(steps[near].ravel())
    return float(np.nanmean(np.concatenate(across)) / np.nanmean(np.concatenate(beside)))
