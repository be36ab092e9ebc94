"""Pixel products, shared by the verbs that give pixels (generate, detokenize): what a tile's decoded
output is blended as, how blended means become products, and the georeferenced Dataset they make.

LULC blends class probabilities (each tile's softmax) and takes the argmax after blending, never before;
images blend standardized pixels and come back in physical units. The blended probabilities are then stored as
``probabilities`` says: ``"float32"``, ``"uint8"`` (CF-packed: ``round(p * 254)``, 255 where nodata, with the
attributes ``scale_factor`` 1/254 and ``_FillValue`` 255 that ``xarray.open_zarr`` decodes; within 1/508 of the
float value, a quarter of the size) or ``None`` (not stored). The classes always come from the float blend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from .arguments import dtype_name
from .engine import Layout
from .facts import LULC_CLASSES, LULC_NODATA
from .geo import georeferenced
from .grid import PixelGrid
from .models.handle import TerraMindModel
from .models.registry import MODALITIES, ModalitySpec, resolve_modality
from .models.sampling import Sampling
from .tiles import Tiles


@dataclass(frozen=True)
class PixelJob:
    """What a pixel verb's region task needs besides its windows."""

    tiles: Tiles
    targets: tuple[str, ...]  # token modalities, e.g. ("tok_S1GRD", "tok_LULC")
    sampling: Sampling
    seed: int
    blend: bool = True  # False: every pixel from the tile owning its token (seams show; for comparison)
    probabilities: str | None = "float32"  # how LULC_probability is stored: one of ``PROBABILITIES``, None: not


PROBABILITIES = ("uint8", "float32")  # how LULC probabilities are stored; None (or False): not at all
PROBABILITY_STEPS, PROBABILITY_FILL = 254, 255  # uint8: p = q / 254, 255 where nodata


def probabilities_option(value) -> str | None:
    """The ``probabilities`` option checked: ``"uint8"``, ``"float32"`` or ``None`` (``False``: None too).

    Example:
        >>> probabilities_option(False) is None
        True
    """
    return dtype_name("probabilities", value, PROBABILITIES, optional=True)


def pixel_spec(token: ModalitySpec) -> tuple[str, tuple[str, ...]]:
    """The pixel product of a token modality: its name and band names."""
    name = token.name.removeprefix("tok_")
    raw = next((spec for spec in MODALITIES.values() if spec.name == name and spec.kind == "image"), None)
    return name, raw.bands if raw else (name,)


def blending(job: PixelJob) -> dict:
    """How a pixel verb's tiles are blended (``BlendedPixels``' keywords): per target the channels (class
    probabilities for LULC, else the bands), and whether to blend at all."""
    channels = {}
    for target in job.targets:
        name, bands = pixel_spec(resolve_modality(target))
        channels[name] = len(LULC_CLASSES) if name == "LULC" else len(bands)
    return {"channels": channels, "blend": job.blend}


def outputs(targets: Sequence[ModalitySpec], probabilities: str | None = "float32") -> dict[str, tuple]:
    """Per output variable: dtype and leading block shape (``LULC_probability`` as ``probabilities`` stores it)."""
    found = {}
    for spec in targets:
        name, bands = pixel_spec(spec)
        if name == "LULC":
            found["LULC"] = (np.uint8, ())
            if probabilities:
                found["LULC_probability"] = (np.dtype(probabilities), (len(LULC_CLASSES),))
        else:
            found[name] = (np.float32, (len(bands),))
    return found


def as_blended(name: str, value: torch.Tensor) -> torch.Tensor:
    """A tile's decoded output as what is blended: LULC logits become probabilities."""
    return torch.softmax(value, dim=1) if name == "LULC" else value


def most_likely(probabilities: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """The ``(h, w)`` index (``dtype``) of each pixel's largest of ``(classes, h, w)`` values, the first of ties (as
    ``argmax``): one pass per class over whole planes, 4x faster than ``argmax(dim=0)`` across the planes' stride."""
    best, classes = probabilities[0].clone(), torch.zeros(probabilities.shape[1:], dtype=dtype)
    for index in range(1, len(probabilities)):
        higher = probabilities[index] > best
        torch.where(higher, probabilities[index], best, out=best)
        classes.masked_fill_(higher, index)
    return classes


def finish(job: PixelJob, model: TerraMindModel, blended: tuple[dict[str, torch.Tensor], torch.Tensor]
           ) -> dict[str, np.ndarray]:
    """Blended standardized outputs -> products: LULC classes (from the float blend) and probabilities as
    ``job.probabilities`` stores them, images in physical units."""
    means, mask = blended
    out = {}
    for name, mean in means.items():
        if name == "LULC":
            out["LULC"] = most_likely(mean).masked_fill_(~mask, LULC_NODATA).numpy()
            if job.probabilities:
                out["LULC_probability"] = stored_probabilities(mean, job.probabilities)
        else:
            out[name] = model.denormalize(name, mean).numpy()
    return out


def stored_probabilities(mean: torch.Tensor, probabilities: str) -> np.ndarray:
    """Blended class probabilities as ``probabilities`` stores them: float32, or uint8 CF-packed (255 where NaN)."""
    if probabilities == "uint8":
        packed = (mean * PROBABILITY_STEPS).round_().clamp_(0, PROBABILITY_STEPS).nan_to_num_(PROBABILITY_FILL)
        return packed.to(torch.uint8).numpy()
    return mean.numpy()


def output_grid(layout: Layout, pixel_grid: PixelGrid) -> PixelGrid:
    """The pixel grid of a pixel verb's outputs: its token regions' pixels (the input's, cut to whole tokens)."""
    tokens = layout.tiling.tokens
    return PixelGrid(pixel_grid.crs, pixel_grid.transform, tokens.height * layout.tiling.patch,
                     tokens.width * layout.tiling.patch)


def pixel_dataset(arrays, layout: Layout, pixel_grid: PixelGrid, specs, attrs) -> xr.Dataset:
    """The georeferenced Dataset of a pixel verb's outputs, on the pixel grid of its token regions (LULC's
    probabilities only where ``arrays`` has them; uint8 ones with their CF packing attributes)."""
    grid = output_grid(layout, pixel_grid)
    time = ("time",) * (layout.times is not None)
    variables = {}  # dims and attributes; coordinates come with the dataset
    for spec in specs:
        name, bands = pixel_spec(spec)
        if name == "LULC":
            variables["LULC"] = xr.DataArray(arrays["LULC"], dims=(*time, "y", "x"), attrs={
                "long_name": "land use / land cover class", "flag_values": list(range(len(LULC_CLASSES))),
                "flag_meanings": " ".join(c.replace(" ", "_").replace("/", "_") for c in LULC_CLASSES),
                "nodata": LULC_NODATA})
            if "LULC_probability" in arrays:
                variables["LULC_probability"] = probability_array(arrays["LULC_probability"], time, LULC_CLASSES)
        else:
            units = next((s.units for s in MODALITIES.values() if s.name == name), "")
            variables[name] = xr.DataArray(arrays[name], dims=(*time, f"{name}_band", "y", "x"),
                                           attrs={"units": units, "band_names": list(bands)})
    dataset = xr.Dataset(variables, coords=layout.time_coords())
    dataset.attrs = attrs | {"product": "generation", "targets": [pixel_spec(s)[0] for s in specs]}
    for var in dataset.data_vars.values():
        var.attrs |= {k: v for k, v in attrs.items() if k not in var.attrs}
    return georeferenced(dataset, grid)


def probability_array(values, time: tuple, class_names: Sequence[str]) -> xr.DataArray:
    """Blended class probabilities ``((time,) class, y, x)`` as a DataArray: uint8 ones with their CF packing, which
    xarray.open_zarr (and GDAL) decode; ``nodata`` for the store's regions without data (zarr v3 keeps a fill value of
    its own, 0)."""
    packing = ({"scale_factor": np.float32(1 / PROBABILITY_STEPS), "_FillValue": np.uint8(PROBABILITY_FILL),
                "nodata": PROBABILITY_FILL} if values.dtype == np.uint8 else {})
    return xr.DataArray(values, dims=(*time, "class", "y", "x"), coords={"class": np.arange(len(class_names))},
                        attrs={"long_name": "class probability, blended across tiles",
                               "class_names": list(class_names)} | packing)
