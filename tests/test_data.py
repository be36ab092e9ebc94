"""The bundled sample (``xterramind.data``): a real Sentinel-2 L1C scene, its files and provenance, opened lazily."""

import dask.array
import numpy as np
import pytest
import rasterio

import xterramind
from xterramind import data


def test_the_sample_is_a_lazy_georeferenced_l1c_cube_of_13_bands():
    cube = xterramind.open_sample()
    assert cube.dims == ("band", "y", "x") and dict(cube.sizes) == {"band": 13, "y": 480, "x": 480}
    assert list(cube.band.values) == list(data.BANDS) and "B10" in data.BANDS and "B8A" in data.BANDS
    assert isinstance(cube.data, dask.array.Array) and cube.dtype == np.uint16
    assert cube.rio.crs.to_epsg() == 32618 and cube.rio.resolution() == (10.0, -10.0)
    assert cube.chunks[1:] == ((240, 240), (240, 240))
    assert cube.rio.nodata is None  # B10's real zeros over dark water are data
    assert cube.attrs["processing_level"] == "L1C" and "CC0" in cube.attrs["title"]


@pytest.mark.parametrize("chunks", [120, 480])
def test_chunks_are_the_callers(chunks):
    cube = xterramind.open_sample(chunks=chunks)
    assert max(cube.chunks[1]) == max(cube.chunks[2]) == chunks


def test_the_pixels_are_those_of_the_bundled_files():
    cube = xterramind.open_sample()
    with rasterio.open(data.SAMPLE_STACK) as stack:
        first = stack.read(1, window=((0, 8), (0, 8)))
        assert stack.count == 12 and stack.crs.to_epsg() == 32618
    np.testing.assert_array_equal(cube.sel(band="B01").values[:8, :8], first)
    with rasterio.open(data.SAMPLE_B10) as b10:
        assert b10.res == (60.0, 60.0)
    assert cube.sel(band="B10").values.any()  # the 60 m cirrus band, nearest-resampled, not left empty


def test_the_provenance_note_sits_beside_the_files():
    note = (data.HERE / "README.md").read_text()
    assert "CC0" in note and data.SAMPLE_STACK.name in note
