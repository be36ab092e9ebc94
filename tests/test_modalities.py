"""From a cube to TerraMind's modalities: bands found by name, units and grids checked. Bad input gets a clear
xterramind error of its own type, raised when embed() is called, before anything runs."""

import warnings

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

import xterramind
from xterramind.errors import (
    GridMismatchError,
    InputError,
    InputWarning,
    MissingBandsError,
    MissingCRSError,
    OptionError,
    UnknownModalityError,
    XterramindError,
)


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
    "missing band": (lambda c: c.drop_sel(band="B05"), {}, MissingBandsError, r"lacks \['B05'\]"),
    "unknown band names": (lambda c: c.assign_coords(band=[f"chan{i}" for i in range(13)]), {}, MissingBandsError,
                           "no TerraMind modality found"),
    "explicit unknown band": (lambda c: c, {"modalities": {"S2L2A": ["B01"] * 11 + ["B13"]}}, MissingBandsError,
                              r"unknown: \['B13'\]"),
    "explicit wrong count": (lambda c: c, {"modalities": {"S2L2A": ["B01", "B02"]}}, MissingBandsError, "must list 12"),
    "explicit missing modality": (lambda c: c, {"modalities": ["S1GRD"]}, MissingBandsError, r"S1GRD needs bands"),
    "bands neither listed nor a cube": (lambda c: c, {"modalities": {"S2L1C": 3}}, OptionError,
                                        "must be a list of band names or a cube"),
    "no modalities": (lambda c: c, {"modalities": []}, OptionError, "modalities is empty"),
    "unknown modality": (lambda c: c, {"modalities": ["S3OLCI"]}, UnknownModalityError, "Known modalities"),
    "token modality from pixels": (lambda c: c, {"modalities": ["tok_LULC"]}, UnknownModalityError, "not a pixel modality"),
    "other grid": (lambda c: c, {"modalities": {"S2L1C": None, "S1GRD": "shifted"}}, GridMismatchError,
                   "different pixel grids.*reproject_match"),
    "other crs": (lambda c: c, {"modalities": {"S2L1C": None, "S1GRD": "utm19"}}, GridMismatchError, "same CRS: False"),
    "no crs": (lambda c: c.drop_vars("spatial_ref"), {}, MissingCRSError, "no CRS.*write_crs"),
    "no crs on a second modality": (lambda c: c, {"modalities": {"S2L1C": None, "S1GRD": "no crs"}}, MissingCRSError,
                                    "S1GRD has no CRS"),
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
        replacements = {"shifted": _s1(cube, shift=10.0), "utm19": _s1(cube, crs="EPSG:32619"),
                        "no crs": _s1(cube).drop_vars("spatial_ref")}
        options = {**options, "modalities": {k: replacements.get(v, v) if isinstance(v, str) else v for k, v in modalities.items()}}
    if error is None:  # not even an xarray object: there is no accessor, resolving its modalities says so
        from xterramind.modalities import resolve

        with pytest.raises(InputError, match="the cube must be an xarray Dataset or DataArray, got ndarray"):
            resolve(data)
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


# -- the grid, the units and the band set: mistakes the data shows ----------------------------------------------


def _on_grid(cube, size: float, crs="EPSG:32618", origin=(442980.0, 4171980.0)):
    """The sample's pixels on another grid: ``size`` CRS units a pixel from ``origin``."""
    steps = np.arange(cube.sizes["x"])
    moved = cube.assign_coords(x=origin[0] + (steps + 0.5) * size, y=origin[1] - (steps + 0.5) * size)
    return moved.rio.write_crs(crs)


@pytest.mark.parametrize("size", [20.0, 30.0, 60.0, 0.5, 4.0])
def test_pixels_far_from_10_m_are_refused_unless_meant(cube, micro, size):
    wrong = _on_grid(cube, size)
    verbs = {"embed": lambda **o: wrong.terramind.embed(micro, **o),
             "generate": lambda **o: wrong.terramind.generate("LULC", micro, **o),
             "tokenize": lambda **o: wrong.drop_sel(band="B10").terramind.tokenize("S2L2A", micro, **o)}
    for verb, call in verbs.items():
        with pytest.raises(InputError, match=rf"{size:g} m x {size:g} m pixels.*trained on 10 m.*"
                                             r"reproject\(cube.rio.crs, resolution=10\).*check_input=False"):
            call()
        assert call(check_input=False).attrs["model"] == micro.name, verb  # said it means it: planned, lazily


def test_ground_pixels_count_not_projected_units(cube, micro):
    """Web Mercator at 60 degrees north stretches 10 m of ground to 20 m of map; US feet are feet."""
    mercator = _on_grid(cube, 20.0, "EPSG:3857", origin=(0.0, 8399737.9))  # ~60.0 N: 2x scale
    assert mercator.terramind.embed(micro).sizes["x"] == 30
    feet = _on_grid(cube, 10 / 0.3048006, "EPSG:2284", origin=(12_000_000.0, 3_500_000.0))  # Virginia South, ftUS
    assert feet.terramind.embed(micro).sizes["x"] == 30
    with pytest.raises(InputError, match="20 m x 20 m"):
        _on_grid(cube, 20.0, "EPSG:32618").terramind.embed(micro)


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:4269", "+proj=longlat +a=6371000 +no_defs", "OGC:CRS84"])
def test_a_geographic_crs_is_refused_with_the_reprojection(cube, micro, crs):
    degrees = _on_grid(cube, 0.0001, crs, origin=(-75.66, 37.69))
    for call in (lambda: degrees.terramind.embed(micro, check_input=False),
                 lambda: degrees.terramind.generate("LULC", micro)):
        with pytest.raises(InputError, match=r"geographic CRS.*degrees.*rio.reproject\(cube.rio.estimate_utm_crs\(\), "
                                             r"resolution=10\)"):
            call()


def _modality(cube, values, bands):
    values = np.asarray(values, dtype="float32")[..., : cube.sizes["y"], : cube.sizes["x"]]
    return xr.DataArray(values, coords={"band": bands, "y": cube.y, "x": cube.x},
                        dims=("band", "y", "x")).rio.write_crs(cube.rio.crs)


RNG = np.random.default_rng(3)
DB = RNG.uniform(-25.0, -5.0, (2, 480, 480))
HEIGHTS = RNG.uniform(0.0, 2500.0, (1, 480, 480))
UNIT_MISTAKES = {  # name: (the cube and its modalities= made from the sample, the fix the message must name)
    "S2 on a 0-1 scale": (lambda c: (c.astype("float32") / 10000, None), r"too small.*multiply by 10000"),
    "S2 in percent": (lambda c: (c.astype("float32") / 100, None), r"too small.*multiply by 100"),
    "S2 ten times too large": (lambda c: (c.astype("float32") * 10, None), r"too large.*cube / 10"),
    "RGB as reflectance": (lambda c: (c.sel(band=["B04", "B03", "B02"]), ["RGB"]), r"8-bit \(0-255.*stretch"),
    "RGB on a 0-1 scale": (lambda c: (c.sel(band=["B04", "B03", "B02"]).astype("float32") / 10000, ["RGB"]),
                           r"0-1.*multiply by 255"),
    "S1 as dB x 10": (lambda c: (c, {"S2L1C": None, "S1GRD": _modality(c, DB * 10, ["vv", "vh"])}),
                      r"scaled dB.*divide"),
    "S1 in linear power": (lambda c: (c, {"S2L1C": None, "S1GRD": _modality(c, 10 ** (DB / 10), ["vv", "vh"])}),
                           r"linear backscatter.*10 \* np.log10"),
    "DEM in cm": (lambda c: (c, {"S2L1C": None, "DEM": _modality(c, HEIGHTS * 100, ["dem"])}), r"convert to metres"),
    "DEM with undeclared nodata": (
        lambda c: (c, {"S2L1C": None, "DEM": _modality(c, np.where(HEIGHTS > 2000, -32768, HEIGHTS), ["dem"])}),
        r"write_nodata"),
    "S2 with its offset removed twice": (lambda c: (c.astype("float32") - 1000, None), r"far below 0.*offset"),
    "S2 wrapped around in int8, as floats": (lambda c: (c.astype("int8").astype("float32"), None),
                                             r"far below 0.*wrapped around"),
    "S2 with an undeclared nodata -9999": (lambda c: (c.astype("float32").where(c.y > c.y[20], -9999), None),
                                           r"far below 0.*write_nodata"),
}


def _chunked(data, modalities, how):
    """The cube and the cubes in ``modalities``, each computed (``how="memory"``) or chunked (``"lazy"``)."""
    def made(value):
        return value.compute() if how == "memory" else value.chunk({"y": 112, "x": 112})

    if isinstance(modalities, dict):
        modalities = {name: value if value is None else made(value) for name, value in modalities.items()}
    return made(data), modalities


@pytest.mark.parametrize("case", UNIT_MISTAKES, ids=list(UNIT_MISTAKES))
def test_values_far_from_what_terramind_learnt_are_refused_with_the_fix(cube, micro, case):
    make, fix = UNIT_MISTAKES[case]
    data, modalities = make(cube.isel(y=slice(0, 224), x=slice(0, 224)))
    in_memory, modalities_in_memory = _chunked(data, modalities, "memory")
    with pytest.raises(InputError, match=fix) as raised:  # in memory: at once, when embed() is called
        in_memory.terramind.embed(micro, modalities=modalities_in_memory)
    assert "check_input=False" in str(raised.value)
    lazy, lazy_modalities = _chunked(data, modalities, "lazy")
    result = lazy.terramind.embed(micro, modalities=lazy_modalities)  # lazy: nothing is read yet...
    with pytest.raises(InputError, match=fix):  # ...the region task that reads the window raises
        result.compute()
    meant = lazy.terramind.embed(micro, modalities=lazy_modalities, check_input=False).compute()
    assert np.isfinite(meant.values).all()


def test_a_dem_maybe_in_km_is_warned_about_while_real_and_synthetic_data_pass(cube, micro):
    from xterramind.grid import PixelGrid
    from xterramind.sources import SyntheticSource

    small = cube.isel(y=slice(0, 224), x=slice(0, 224))
    km = _modality(small, HEIGHTS / 1000, ["dem"]).chunk({"y": 112, "x": 112})
    with pytest.warns(InputWarning, match=r"in km, multiply by 1000.*check_input=False"):
        warned = small.terramind.embed(micro, modalities={"S2L1C": None, "DEM": km}).compute()
    assert np.isfinite(warned.values).all()
    grid = PixelGrid("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), 224, 224)
    synthetic = SyntheticSource(["S2L2A", "S1GRD", "DEM"]).read(grid, ((0, 224), (0, 224)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        small.terramind.embed(micro, modalities={"S2L1C": None, "DEM": km}, check_input=False).compute()
        assert cube.terramind.embed(micro).notnull().all()  # the real sample: 10 m UTM, L1C x 10000
        embedded = synthetic.terramind.embed(micro)
        assert embedded.attrs["modalities"] == ["S2L2A", "S1GRD", "DEM"] and np.isfinite(embedded.values).all()


def _bands(cube, names):
    return cube.isel(band=slice(0, len(names))).assign_coords(band=names)


OTHER_SENSORS = {
    "Landsat 8/9 numbered": ([f"B{i}" for i in range(1, 12)], "Landsat 8/9 or HLS L30"),
    "Landsat collection 2": (["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10", "QA_PIXEL"],
                             "Landsat"),
    "Landsat on Earth Search": (["coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir11"], "Landsat"),
    "Landsat without thermal": (["coastal", "blue", "green", "red", "nir08", "swir16", "swir22"], "Landsat"),
    "HLS L30": (["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B09", "B10", "B11", "Fmask"], "Landsat 8/9 or HLS L30"),
    "PlanetScope": (["coastal_blue", "blue", "green_i", "green", "yellow", "red", "rededge", "nir"], "PlanetScope"),
    "MODIS": ([f"sur_refl_b0{i}" for i in range(1, 8)], "MODIS"),
}


@pytest.mark.parametrize("case", OTHER_SENSORS, ids=list(OTHER_SENSORS))
def test_other_sensors_are_not_invited_into_sentinel2_slots(cube, micro, case):
    names, sensor = OTHER_SENSORS[case]
    other = _bands(cube, names)
    for modalities in (None, ["S2L2A"]):
        with pytest.raises(MissingBandsError, match=rf"look like {sensor}.*does not take.*TerraMind takes S2L2A \(B01.*"
                                             r"S1GRD \(VV, VH; dB\).*DEM") as raised:
            other.terramind.embed(micro, modalities=modalities)
        assert "add the missing" not in str(raised.value) and "Add them" not in str(raised.value)


@pytest.mark.parametrize("names", [["red", "green", "blue"], ["R", "G", "B"], ["B04", "B03", "B02"], ["B4", "B3", "B2"]])
def test_a_red_green_blue_cube_is_pointed_to_rgb_and_rgb_works(cube, micro, names):
    rgb = (cube.sel(band=["B04", "B03", "B02"]).astype("float32") / 3000 * 255).clip(0, 255).assign_coords(band=names)
    with pytest.raises(MissingBandsError, match=r"red, green and blue.*modalities=\['RGB'\]"):
        rgb.terramind.embed(micro)
    small = rgb.isel(y=slice(0, 224), x=slice(0, 224))
    embedded = small.terramind.embed(micro, modalities=["RGB"])
    assert embedded.attrs["modalities"] == ["RGB"] and np.isfinite(embedded.values).all()
    assert set(small.terramind.generate("LULC", micro, modalities=["RGB"], timesteps=1)["LULC"].values.ravel()) <= set(range(10))


def test_sentinel2_with_bands_missing_is_still_told_to_add_them(cube, micro):
    with pytest.raises(MissingBandsError, match=r"lacks \['B05', 'B06'\]: if it is Sentinel-2, add the missing bands") as raised:
        cube.drop_sel(band=["B05", "B06"]).terramind.embed(micro)
    assert "np.str_" not in str(raised.value)
    with pytest.raises(MissingBandsError, match=r"add the missing bands.*modalities=\{'RGB': \['B04', 'B03', 'B02'\]\}"):
        cube.sel(band=["B02", "B03", "B04", "B08"]).terramind.embed(micro)  # the 10 m bands only


def test_spatial_dims_declared_to_rioxarray_are_honoured(cube, micro):
    small = cube.isel(y=slice(0, 160), x=slice(0, 160))
    declared = small.rename(y="lat", x="lon").rio.set_spatial_dims(x_dim="lon", y_dim="lat")
    result = declared.terramind.embed(micro, tile_size=160)
    assert result.dims == ("embedding", "y", "x")
    np.testing.assert_array_equal(result.values, small.terramind.embed(micro, tile_size=160).values)
    np.testing.assert_array_equal(result.x.values, small.terramind.embed(micro, tile_size=160).x.values)
    dataset = declared.to_dataset(dim="band").rio.set_spatial_dims(x_dim="lon", y_dim="lat")
    assert dataset.terramind.embed(micro, tile_size=160).dims == ("embedding", "y", "x")


# -- the dtype must hold the values, the messages name them plainly ---------------------------------------------


def _small(cube, side=160):
    return cube.isel(y=slice(0, side), x=slice(0, side))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("modality", ["S2L1C", "S2L2A"])
def test_8_bit_sentinel2_is_refused_by_its_dtype_before_any_read(cube, micro, dtype, modality):
    small = _small(cube) if modality == "S2L1C" else _small(cube).drop_sel(band="B10")
    lazy = small.astype(dtype).chunk({"y": 80, "x": 80})
    reads = []
    counted = lazy.copy(data=lazy.data.map_blocks(lambda block: reads.append(1) or block,
                                                       meta=np.array((), dtype=dtype)))
    for modalities in (None, [modality]):
        with pytest.raises(InputError, match=rf"{modality} has dtype {dtype}: 8-bit integers cannot hold Sentinel-2 "
                                             r"reflectance x 10000.*16-bit integers or floats"):
            counted.terramind.embed(micro, modalities=modalities, tile_size=160)
    assert reads == []
    rgb = (small.sel(band=["B04", "B03", "B02"]) / 3000 * 255).clip(0, 255).astype("uint8")  # 8-bit RGB is right
    assert np.isfinite(rgb.terramind.embed(micro, modalities=["RGB"], tile_size=160).values).all()


def test_far_negative_reflectance_is_refused_while_negative_db_passes(cube, micro):
    small = _small(cube)
    s1 = _s1(cube).isel(y=slice(0, 160), x=slice(0, 160)) - 8.0  # -20 dB: far below 0, and right
    with pytest.raises(InputError, match=r"S2L1C values go far below 0"):
        (small.astype("float32") - 1000).terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": s1},
                                                         tile_size=160).compute()
    embedded = small.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": s1}, tile_size=160)
    assert np.isfinite(embedded.values).all()


def test_messages_name_bands_and_numbers_as_plain_values(cube, micro):
    """numpy 2 prints its scalars as np.str_('B01') and np.float64(10.0): the messages must not."""
    names = list(cube.band.values)
    assert type(names[0]).__module__ == "numpy"
    calls = {
        "five names": lambda: cube.terramind.embed(micro, modalities={"S2L2A": names[:5]}),
        "a missing band": lambda: cube.drop_sel(band="B10").terramind.embed(micro, modalities=["S2L1C"]),
        "a Dataset without B10": lambda: cube.drop_sel(band="B10").to_dataset(dim="band").terramind.embed(
            micro, modalities=["S2L1C"]),
        "no modality": lambda: cube.isel(band=[0, 1]).terramind.embed(micro),
        "another grid": lambda: cube.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": _s1(cube, shift=5)}),
    }
    for what, call in calls.items():
        with pytest.raises(InputError) as raised:
            call()
        message = str(raised.value)
        assert "np." not in message and ("'B01'" in message or "442980.0" in message), (what, message)
    with pytest.raises(InputError, match=r"must list 12.*got 5"):
        calls["five names"]()
