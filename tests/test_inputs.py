"""Bad input: each a clear xterramind error, raised when embed() is called, before anything runs."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import xterramind
from xterramind.errors import InputError, UnknownModalityError, XterramindError


@pytest.fixture(scope="module")
def cube():
    return xterramind.open_sample()


def _s1(cube, **changes):
    s1 = xr.DataArray(
        np.full((2, 480, 480), -12.0, dtype="float32"), coords={"band": ["VV", "VH"], "y": cube.y, "x": cube.x},
        dims=("band", "y", "x"),
    ).rio.write_crs(cube.rio.crs)
    if "shift" in changes:
        s1 = s1.assign_coords(x=s1.x + changes["shift"])
    if "crs" in changes:
        s1 = s1.rio.write_crs(changes["crs"])
    return s1


CASES = {
    "missing band": (lambda c: c.drop_sel(band="B05"), {}, InputError, r"lacks \['B05'\]"),
    "unknown band names": (lambda c: c.assign_coords(band=[f"chan{i}" for i in range(13)]), {}, InputError, "no TerraMind modality found"),
    "explicit unknown band": (lambda c: c, {"modalities": {"S2L2A": ["B01"] * 11 + ["B13"]}}, InputError, r"unknown: \['B13'\]"),
    "explicit wrong count": (lambda c: c, {"modalities": {"S2L2A": ["B01", "B02"]}}, InputError, "must list 12"),
    "unknown modality": (lambda c: c, {"modalities": ["S3OLCI"]}, UnknownModalityError, "Known modalities"),
    "token modality from pixels": (lambda c: c, {"modalities": ["tok_LULC"]}, UnknownModalityError, "not a pixel modality"),
    "other grid": (lambda c: c, {"modalities": {"S2L1C": None, "S1GRD": "shifted"}}, InputError, "different pixel grids.*reproject_match"),
    "other crs": (lambda c: c, {"modalities": {"S2L1C": None, "S1GRD": "utm19"}}, InputError, "same CRS: False"),
    "no crs": (lambda c: c.drop_vars("spatial_ref"), {}, InputError, "no CRS.*write_crs"),
    "lat lon dims": (lambda c: c.rename(y="lat", x="lon"), {}, InputError, r"rename\(\{'lat': 'y', 'lon': 'x'\}\)"),
    "no spatial dims": (lambda c: c.isel(x=0), {}, InputError, "spatial dimensions 'y' and 'x'"),
    "extra dims": (lambda c: c.expand_dims(member=2), {}, InputError, "besides"),
    "text dtype": (lambda c: c.astype(str), {}, InputError, "expected real numbers"),
    "complex dtype": (lambda c: c.astype("complex64"), {}, InputError, "expected real numbers"),
    "all nan in memory": (lambda c: (c.astype("float32") * np.nan).compute(), {}, InputError, "no valid pixel"),
    "smaller than a tile": (lambda c: c.isel(y=slice(0, 200)), {}, InputError, "smaller than one 224-px tile.*tile_size"),
    "bad overlap": (lambda c: c, {"overlap": 40}, InputError, "multiple of 32"),
    "bad merge": (lambda c: c, {"merge": "dict"}, InputError, "merge must be"),
    "bad layer": (lambda c: c, {"layer": 12}, InputError, "layer 12 does not exist"),
    "bad batch": (lambda c: c, {"batch_size": 0}, InputError, "batch_size"),
    "not a cube": (lambda c: c.values, {}, None, None),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_refused_before_compute(cube, micro, case):
    make, options, error, match = CASES[case]
    data = make(cube)
    modalities = options.get("modalities")
    if isinstance(modalities, dict):
        replacements = {"shifted": _s1(cube, shift=10.0), "utm19": _s1(cube, crs="EPSG:32619")}
        options = {**options, "modalities": {k: replacements.get(v, v) if isinstance(v, str) else v for k, v in modalities.items()}}
    if error is None:  # not even an xarray object: the accessor does not exist, embed() says so
        from xterramind import engine

        with pytest.raises(InputError, match="xarray Dataset or DataArray"):
            engine.embed(data, micro)
        return
    with pytest.raises(error, match=match) as raised:
        data.terramind.embed(micro, **options)
    assert isinstance(raised.value, XterramindError)


def test_a_model_that_is_not_a_handle_is_refused(cube):
    with pytest.raises(InputError, match="load_model"):
        cube.terramind.embed("terramind_v1_tiny")


def test_small_cubes_run_with_a_smaller_tile(cube, micro):
    small = cube.isel(y=slice(0, 160), x=slice(0, 160))
    result = small.terramind.embed(micro, tile_size=160)
    assert result.shape == (64, 10, 10) and np.isfinite(result.values).all()


def test_linear_sentinel1_is_taken_for_what_it_is(cube, micro):
    linear = xr.DataArray(
        np.random.default_rng(1).uniform(0.01, 0.2, (2, 480, 480)).astype("float32"),
        coords={"band": ["vv", "vh"], "y": cube.y, "x": cube.x}, dims=("band", "y", "x"),
    ).rio.write_crs(cube.rio.crs)
    with pytest.raises(InputError, match=r"linear backscatter.*10 \* np\.log10"):  # in memory: at once
        cube.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": linear})
    lazy = cube.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": linear.chunk({"y": 240, "x": 240})})
    with pytest.raises(InputError, match="linear backscatter"):  # lazy: when the region reads it
        _ = lazy.values
    decibels = 10 * np.log10(linear)
    assert np.isfinite(cube.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": decibels}).values).all()
