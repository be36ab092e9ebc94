"""The one table of per-modality facts: it agrees with the model's registry, and what xterramind loads, makes up
and gives back says the same (one spelling of each modality's units, one dtype, one nodata)."""

import math
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
from affine import Affine

import xterramind
from xterramind import facts, quicklook
from xterramind.facts import (
    DATA,
    LULC_CLASSES,
    LULC_COLOURS,
    LULC_NODATA,
    S2_ALIASES,
    TOKEN_NODATA,
    band_aliases,
    band_key,
)
from xterramind.grid import PixelGrid
from xterramind.models.registry import MODALITIES, resolve_modality
from xterramind.sources import StacSource, SyntheticSource


@pytest.mark.parametrize("name", DATA)
def test_each_modality_s_data_facts_fit_the_model_and_their_dtype(name):
    entry, spec = DATA[name], resolve_modality(name)
    assert entry.modality == spec.name and entry.bands == spec.bands and entry.units == spec.units != ""
    dtype = np.dtype(entry.dtype)
    low, high = entry.span
    assert low < high
    if dtype.kind == "u":  # digital numbers: 0 is nodata, every made-up value fits above it
        assert entry.nodata == 0 and np.iinfo(dtype).min <= entry.nodata < low and high <= np.iinfo(dtype).max
        assert entry.attrs["nodata"] == 0
    else:
        assert dtype == np.float32 and math.isnan(entry.nodata) and "nodata" not in entry.attrs
    assert entry.attrs["units"] == spec.units and entry.attrs.get("modality", name) == name
    composite = entry.composited()
    assert composite.dtype == "float32" and "nodata" not in composite.attrs and composite.units == entry.units


def test_made_up_and_loaded_data_name_the_units_results_carry():
    """One spelling per modality: the one generated images are stored with (the model's spec)."""
    grid = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 32, 32)
    for modalities in (["S2L2A", "S1GRD", "DEM"], ["S2L1C", "S1RTC"]):
        made_up = SyntheticSource(modalities).read(grid, ((0, 32), (0, 32)))
        planned = StacSource([_item()], modalities).prototype(grid)
        for name in modalities:
            units = next(spec.units for spec in MODALITIES.values() if spec.name == name)  # as generate() finds them
            for band in resolve_modality(name).bands:
                assert made_up[band].attrs["units"] == planned[band].attrs["units"] == units, (name, band)


def _item():
    """An item with nothing in it: a prototype reads no item."""
    return pystac.Item("empty", None, None, datetime(2024, 6, 1, tzinfo=UTC), {})


def test_band_names_are_matched_under_every_spelling():
    assert [band_key(name) for name in ("B2", "b02", "B02_10m", " B8A ", "Red Edge-1", "nir08")] == \
           ["b02", "b02", "b02", "b8a", "red_edge_1", "nir08"]
    for name in ("S2L1C", "S2L2A", "S1GRD", "S1RTC", "DEM", "RGB"):
        spec = resolve_modality(name)
        table = band_aliases(spec)
        assert set(table.values()) == set(spec.bands)  # every band, and only the modality's own
        assert all(table[band_key(band)] == band for band in spec.bands)
    s2 = band_aliases(resolve_modality("S2L2A"))
    assert "cirrus" not in s2 and band_aliases(resolve_modality("S2L1C"))["cirrus"] == "B10"  # L2A has no B10
    assert all(s2[band_key(alias)] == band for band, aliases in S2_ALIASES.items() if band != "B10" for alias in aliases)
    assert band_aliases(resolve_modality("RGB"))["r"] == "RED" and "r" not in s2


def test_land_cover_classes_colours_and_nodata():
    assert len(LULC_CLASSES) == len(LULC_COLOURS) == 10 and LULC_COLOURS.dtype == np.uint8
    assert LULC_CLASSES[LULC_NODATA] == "no data" and (LULC_COLOURS[LULC_NODATA] == 0).all()  # black
    assert len({tuple(colour) for colour in LULC_COLOURS}) == 10  # every class its own colour
    assert TOKEN_NODATA == -1
    assert tuple(xterramind.LULC_CLASSES) == LULC_CLASSES and quicklook.LULC_COLOURS is facts.LULC_COLOURS
