"""Facts about each modality's data, kept once: band names and their aliases, units, the dtype and nodata of
the data xterramind loads or makes up, and the classes, colours and nodata values of its outputs.

Band names and units are the model's (``xterramind.models.registry``); this module adds what the data
around the model holds. Everything here is data, and importing it needs no torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from .models.registry import ModalitySpec, resolve_modality

__all__ = [
    "DATA",
    "DEM_ALIASES",
    "LULC_CLASSES",
    "LULC_COLOURS",
    "LULC_NODATA",
    "RGB_ALIASES",
    "S1_ALIASES",
    "S2_ALIASES",
    "TOKEN_NODATA",
    "DataFacts",
    "band_aliases",
    "band_key",
]

# -- band names ------------------------------------------------------------------------------------------

S2_ALIASES = {
    "B01": ("coastal", "coastal_aerosol", "aerosol"),
    "B02": ("blue",),
    "B03": ("green",),
    "B04": ("red",),
    "B05": ("rededge1", "red_edge_1", "rededge"),
    "B06": ("rededge2", "red_edge_2"),
    "B07": ("rededge3", "red_edge_3"),
    "B08": ("nir", "nir_broad"),
    "B8A": ("nir08", "nir_narrow", "rededge4", "red_edge_4"),
    "B09": ("nir09", "water_vapor", "water_vapour"),
    "B10": ("cirrus",),
    "B11": ("swir16", "swir_1", "swir1"),
    "B12": ("swir22", "swir_2", "swir2"),
}
"""Sentinel-2's band names in Earth Search, Planetary Computer and common use, by TerraMind's name."""
S1_ALIASES = {"VV": ("sigma0_vv", "gamma0_vv"), "VH": ("sigma0_vh", "gamma0_vh")}
DEM_ALIASES = {"DEM": ("elevation", "height", "copdem")}
RGB_ALIASES = {"RED": ("red", "b04", "r"), "GREEN": ("green", "b03", "g"), "BLUE": ("blue", "b02", "b")}


def band_key(name) -> str:
    """A band name reduced for matching: lower case, no resolution suffix (``B02_10m``), ``B1`` -> ``b01``.

    Example:
        >>> band_key("B2_10m"), band_key("Red Edge-1")
        ('b02', 'red_edge_1')
    """
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    key = re.sub(r"_(10|20|60)m$", "", key)
    return re.sub(r"^b(\d)$", r"b0\1", key)


def band_aliases(spec: ModalitySpec) -> dict[str, str]:
    """Every name a band of ``spec`` goes by, reduced with ``band_key``, -> the modality's own band name.

    Example:
        >>> band_aliases(resolve_modality("S1GRD"))["sigma0_vv"]
        'VV'
    """
    table = RGB_ALIASES if spec.name == "RGB" else {**S2_ALIASES, **S1_ALIASES, **DEM_ALIASES}
    keys = {}
    for band in spec.bands:
        for alias in (band, *table.get(band, ())):
            keys[band_key(alias)] = band
    return keys


# -- data of each modality -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFacts:
    """What the bands of one modality hold as ``xterramind.stac.load`` loads them and
    ``xterramind.sources.SyntheticSource`` makes them up.

    Attributes:
        modality: the modality's name, e.g. ``"S2L2A"``.
        dtype: the bands' dtype: Sentinel-2's digital numbers stay integers, the rest are floats.
        nodata: the value of a pixel without data: 0 for Sentinel-2 (valid pixels are >= 1), else NaN.
        span: the range made-up values span, about that of real data.
        marked: the bands say which modality they hold (``attrs["modality"]``): S1GRD and S1RTC have the
            same band names, and only this tells them apart.

    Example:
        >>> DATA["S2L2A"].dtype, DATA["S2L2A"].attrs
        ('uint16', {'nodata': 0, 'units': 'L2A reflectance x 10000'})
    """

    modality: str
    dtype: str
    nodata: float
    span: tuple[float, float]
    marked: bool = False

    @property
    def bands(self) -> tuple[str, ...]:
        """The band names, in the model's order."""
        return resolve_modality(self.modality).bands

    @property
    def units(self) -> str:
        """The units, as the model's spec and every xterramind result name them."""
        return resolve_modality(self.modality).units

    @property
    def attrs(self) -> dict:
        """The attributes every band carries: ``nodata`` where it is a number, ``units``, and ``modality``
        where ``marked``."""
        attrs = {} if math.isnan(self.nodata) else {"nodata": self.nodata}
        attrs["units"] = self.units
        return attrs | ({"modality": self.modality} if self.marked else {})

    def composited(self) -> DataFacts:
        """The facts of a median over dates of these bands: floats, NaN where no date had data.

        Example:
            >>> DATA["S2L2A"].composited().attrs
            {'units': 'L2A reflectance x 10000'}
        """
        return replace(self, dtype="float32", nodata=math.nan)


DATA = {facts.modality: facts for facts in (
    DataFacts("S2L2A", "uint16", 0, (200.0, 4000.0)),
    DataFacts("S2L1C", "uint16", 0, (800.0, 4500.0)),
    DataFacts("S1GRD", "float32", math.nan, (-25.0, 0.0), marked=True),
    DataFacts("S1RTC", "float32", math.nan, (-25.0, 0.0), marked=True),
    DataFacts("DEM", "float32", math.nan, (0.0, 2500.0)),
)}
"""The modalities xterramind loads from STAC and makes up, by name, with the facts of their data."""

# -- outputs ---------------------------------------------------------------------------------------------

LULC_CLASSES = ("no data", "water", "trees", "flooded vegetation", "crops", "built area", "bare ground",
                "snow/ice", "clouds", "rangeland")
"""TerraMind's land-cover classes, by class id (0 = no data)."""
LULC_NODATA = 0  # the class id of cells without valid input
TOKEN_NODATA = -1  # the token id of cells without valid input

LULC_COLOURS = np.array([
    (0, 0, 0), (65, 155, 223), (57, 125, 73), (122, 135, 198), (228, 150, 53), (196, 40, 27), (165, 155, 143),
    (168, 235, 255), (97, 97, 97), (227, 226, 195)], dtype=np.uint8)
"""The usual land-cover colours (Esri 10 m land cover), ``(10, 3)`` uint8 RGB for TerraMind's classes 0..9; no
data is black."""
