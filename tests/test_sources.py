"""Where a run's pixels come from: each source gives the same pixels for a window whoever reads it, and a
prototype with exactly the variables, dtypes and attributes its reads have."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from rasterio.transform import from_origin

from tests.stac_catalogue import catalogue, l1c_files, make_item, write_cog
from xterramind import stac
from xterramind.errors import InputError, OptionError
from xterramind.geo import grid_of
from xterramind.planner import plan_area
from xterramind.sources import CubeSource, StacSource, SyntheticSource

JUNE = datetime(2024, 6, 1, 15, 50, tzinfo=UTC)


def _described(cube) -> dict:
    """Each variable's dtype and attributes: what a prototype must get right."""
    return {name: (var.dtype, var.attrs) for name, var in cube.data_vars.items()}


def test_synthetic_pixels_depend_only_on_their_place():
    zone = plan_area((9.0, 45.0, 9.1, 45.1), region=24).zones[0]
    source = SyntheticSource(["S2L2A", "S1GRD"], land=(9.0, 45.0, 9.05, 45.1))
    whole = source.read(zone.grid, ((0, 768), (0, 768)))
    part = source.read(zone.grid, ((100, 300), (250, 700)))
    for band in ("B04", "VV"):
        np.testing.assert_array_equal(part[band].values, whole[band].values[100:300, 250:700])
    assert part.rio.transform() == whole.isel(y=slice(100, 300), x=slice(250, 700)).rio.transform()
    prototype = source.prototype(zone.grid)
    assert {name: (v.dtype, v.attrs) for name, v in prototype.data_vars.items()} == \
           {name: (v.dtype, v.attrs) for name, v in whole.data_vars.items()}
    land = whole["B04"].values > 0  # outside the land every band is nodata: 0 for S2, NaN for S1
    assert 0.2 < land.mean() < 0.8 and (np.isnan(whole["VV"].values) == ~land).all()
    assert not land[:, -50:].any() and whole["B04"].values[land].std() > 100
    assert not source.covers(zone.grid, ((0, 100), (700, 768)))
    assert source.read(zone.grid, ((0, 100), (700, 768))) is None
    for modalities in (["RGB"], ["S2L2A", "tok_LULC"], []):
        with pytest.raises(OptionError, match="synthetic pixels exist for"):
            SyntheticSource(modalities)



def test_synthetic_prototypes_of_every_modality_are_what_reads_give():
    grid = plan_area((9.0, 45.0, 9.1, 45.1), region=24).zones[0].grid
    for modalities in (["S2L1C", "S1GRD", "DEM"], ["S2L2A", "S1RTC"]):  # S2 and S1 twice would share band names
        source = SyntheticSource(modalities, seed=3)
        pixels = source.read(grid, ((0, 64), (0, 64)))
        assert _described(source.prototype(grid)) == _described(pixels)
        assert pixels["B01"].dtype == np.uint16 and pixels["VV"].dtype == np.float32
        assert pixels["VV"].attrs["modality"] == pixels["VH"].attrs["modality"] == modalities[1]
    assert pixels["B01"].attrs == {"nodata": 0, "units": "L2A reflectance x 10000"}


def test_a_cube_source_reads_its_windows_in_memory(cube):
    source = CubeSource(cube)
    grid = grid_of(cube, "the sample")
    assert source.prototype(grid) is cube and source.covers(grid, ((0, 10), (0, 10)))
    part = source.read(grid, ((100, 300), (50, 250)))
    assert isinstance(part.data, np.ndarray) and part.sizes == {"band": 13, "y": 200, "x": 200}
    np.testing.assert_array_equal(part.values, cube.values[:, 100:300, 50:250])
    with pytest.raises(InputError, match="xarray Dataset or DataArray, got ndarray"):
        CubeSource(cube.values)
    with pytest.raises(InputError, match=r"one date per pixel.*isel\(time=0\)"):
        CubeSource(cube.expand_dims(time=2))


def _items(tmp_path):
    """Two dates of the real L1C fixture with Sentinel-1 in linear power beside each."""
    items = []
    for number, when in enumerate((JUNE, JUNE + timedelta(days=10))):
        items.append(make_item(f"l1c-{number}", l1c_files(), when))
        folder = tmp_path / f"s1-{number}"
        folder.mkdir()
        files = {band: write_cog(folder / f"{band}.tif", np.full((480, 480), value, np.float32),
                                 from_origin(442980, 4171980, 10, 10)) for band, value in (("vv", 0.05), ("vh", 0.01))}
        items.append(make_item(f"s1-{number}", files, when))
    return items


def test_stac_prototypes_are_what_reads_give_with_and_without_a_composite(tmp_path):
    path = catalogue(tmp_path, _items(tmp_path))
    grid = grid_of(stac.load(path, ["S2L1C"], time="2024-06-01")["B02"], "the fixture")  # 480 x 480 px
    window = ((100, 228), (200, 328))
    single = StacSource(path, ["S2L1C", "S1GRD"], time="2024-06-01")
    pixels = single.read(grid, window)
    assert single.covers(grid, window) and _described(single.prototype(grid)) == _described(pixels)
    assert pixels["B02"].dtype == np.uint16 and pixels["B02"].attrs["nodata"] == 0
    median = StacSource(path, ["S2L1C", "S1GRD"], time="2024-06-01/2024-06-30", composite="median")
    pixels = median.read(grid, window)
    assert _described(median.prototype(grid)) == _described(pixels)
    assert pixels["B02"].dtype == np.float32 and "nodata" not in pixels["B02"].attrs
    with pytest.raises(OptionError, match=r"2 dates in 2024-06-01/2024-06-30.*composite='median'"):
        StacSource(path, ["S2L1C"], time="2024-06-01/2024-06-30").read(grid, window)


BAD_STAC_SOURCES = {  # what is wrong: (the call on a catalogue's path, the error it gets, what the message says)
    "no modalities": (lambda path: StacSource(path, []), OptionError, "modalities is empty"),
    "a modality not loaded": (lambda path: StacSource(path, ["RGB"]), OptionError, "STAC loading covers.*not RGB"),
    "another composite": (lambda path: StacSource(path, composite="mean"), OptionError, "must be None or 'median'"),
    "a date misspelt": (lambda path: StacSource(path, time="June 2024"), OptionError, "time must look like 2024-06-01"),
    "an API without collections": (lambda path: StacSource("https://example.com/stac"), OptionError, "collections="),
    "no catalogue": (lambda path: StacSource(path.parent / "nothing.json"), InputError, "no STAC catalogue"),
    "not items": (lambda path: StacSource([1, 2]), OptionError, "items must be pystac Items"),
}


@pytest.mark.parametrize("case", BAD_STAC_SOURCES, ids=list(BAD_STAC_SOURCES))
def test_bad_stac_sources_get_clear_errors(tmp_path, case):
    call, error, message = BAD_STAC_SOURCES[case]
    with pytest.raises(error, match=message):
        call(catalogue(tmp_path, [make_item("l1c", l1c_files(), JUNE)]))
