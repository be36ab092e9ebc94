"""The ``generate`` verb on the bundled real scene: determinism, chunk invariance, georeferencing, seams, image
targets, stores, its declaration and its errors (token verbs: test_tokens.py; Thinking-in-Modalities: test_embed.py)."""

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import torch
import xarray as xr

import xterramind
from tests.seams import boundaries, seam_excess
from xterramind import generate
from xterramind.errors import InputError, OptionError, UnknownModalityError, XterramindError
from xterramind.grid import Tiling
from xterramind.modalities import grid_of, resolve
from xterramind.models.handle import TerraMindModel
from xterramind.verb import PIXELS


def test_lulc_depends_only_on_the_seed(cube, micro, lulc):
    again = cube.terramind.generate("LULC", micro, seed=7).compute()
    other = cube.terramind.generate("LULC", micro, seed=8).compute()
    np.testing.assert_array_equal(again.LULC.values, lulc.LULC.values)
    assert (other.LULC.values != lulc.LULC.values).mean() > 0.05


def test_lulc_is_the_same_for_any_chunking(cube, micro, lulc):
    for input_chunks, output_chunks in (({"y": 100, "x": 77}, 7), ({"y": 480, "x": 480}, 30), ({"y": 240, "x": 160}, 12)):
        other = cube.chunk(input_chunks).terramind.generate("LULC", micro, seed=7, chunks=output_chunks).compute()
        np.testing.assert_array_equal(other.LULC.values, lulc.LULC.values)
        np.testing.assert_allclose(other.LULC_probability.values, lulc.LULC_probability.values, atol=1e-5, rtol=0)


def test_lulc_sits_on_the_input_grid_with_valid_classes_and_probabilities(cube, lulc):
    assert lulc.LULC.dtype == np.uint8 and lulc.LULC.dims == ("y", "x")
    assert lulc.rio.crs == cube.rio.crs and lulc.LULC.rio.transform() == cube.rio.transform()
    assert lulc.sizes["y"] == cube.sizes["y"] and lulc.sizes["x"] == cube.sizes["x"]
    assert set(np.unique(lulc.LULC.values)) <= set(range(10))
    np.testing.assert_allclose(lulc.LULC_probability.sum("class").values, 1.0, atol=1e-5)
    np.testing.assert_array_equal(lulc.LULC.values, lulc.LULC_probability.argmax("class").values)
    attrs = lulc.LULC.attrs
    assert attrs["seed"] == 7 and attrs["weights"] == "random" and attrs["tokenizers"] == {"LULC": "random"}
    assert attrs["flag_meanings"].split()[1:3] == ["water", "trees"]


def _coherent_tiles(self, inputs, targets, *, seeds, **kwargs):
    """A stand-in for the model: every tile a smooth field of its own (as a trained model's tiles
    disagree at their edges), so that stitching alone decides whether seams show."""
    size = next(iter(inputs.values())).shape[-1]
    ramp = torch.linspace(0, 0.2, size)
    out = {}
    for name in targets:
        fields = [3 * torch.randn(10, generator=torch.Generator().manual_seed(s))[:, None, None] + ramp[None, :, None]
                  for s in seeds]
        out[name.removeprefix("tok_")] = torch.stack(fields).expand(-1, -1, size, size).clone()
    return out


def test_blending_leaves_no_seam_where_hard_crops_do(cube, micro, monkeypatch):
    monkeypatch.setattr(TerraMindModel, "generate", _coherent_tiles)
    rows, cols = boundaries(Tiling(grid_of(resolve(cube)[0].data, "cube")))
    blended = cube.terramind.generate("LULC", micro, seed=3).LULC_probability.values
    cropped = cube.terramind.generate("LULC", micro, seed=3, blend=False).LULC_probability.values
    assert seam_excess(cropped, rows, cols) > 10  # a hard cut between tiles that disagree
    assert seam_excess(blended, rows, cols) < 2  # a raised-cosine ramp peaks at about 1.6


def test_seam_metric_is_about_one_for_a_seamless_map():
    smooth = np.broadcast_to(np.linspace(0, 1, 480), (2, 480, 480))
    assert seam_excess(smooth, [192, 384], [192, 384]) == pytest.approx(1.0, abs=0.01)


def test_image_targets_chain_and_come_back_in_physical_units(cube, micro):
    out = cube.terramind.generate(["S1GRD", "LULC"], micro, seed=1, timesteps=2).compute()
    assert set(out.data_vars) == {"S1GRD", "LULC", "LULC_probability"}
    s1 = out.S1GRD
    assert s1.dims == ("S1GRD_band", "y", "x") and s1.attrs["band_names"] == ["VV", "VH"] and s1.attrs["units"] == "dB"
    # standardized outputs are clipped to [-1, 1]: physical values stay within mean +- std
    assert float(s1[0].min()) >= -12.599 - 5.195 - 1e-3 and float(s1[0].max()) <= -12.599 + 5.195 + 1e-3
    alone = cube.terramind.generate("LULC", micro, seed=1).compute()
    assert (alone.LULC.values != out.LULC.values).mean() > 0.05  # LULC saw the generated S1GRD


def test_generated_stores_read_back_in_xarray_and_gdal(cube, micro, tmp_path):
    out = cube.terramind.generate("LULC", micro, seed=7, chunks=12)
    report = out.terramind.to_zarr(tmp_path / "lulc.zarr", zarr_format=2)
    assert report.written == 9
    stored = xr.open_zarr(tmp_path / "lulc.zarr", decode_coords="all")
    np.testing.assert_array_equal(stored.LULC.values, out.LULC.values)
    assert stored.LULC.dtype == np.uint8 and stored.LULC.rio.crs == cube.rio.crs
    with rasterio.open(f'ZARR:"{tmp_path / "lulc.zarr"}":/LULC') as dataset:
        assert dataset.crs.to_epsg() == 32618 and dataset.transform == cube.rio.transform()
        np.testing.assert_array_equal(dataset.read(1), out.LULC.values)


@pytest.mark.parametrize(
    "targets, options, error, match",
    [
        ([], {}, InputError, "no targets"),
        ("S2L1C", {}, UnknownModalityError, "cannot be generated"),
        ("Sentinel3", {}, UnknownModalityError, "unknown generation target .Sentinel3.; the targets are"),
        ("S2", {}, UnknownModalityError, r"the targets are \[.S2L2A."),
        (["LULC", "tok_LULC"], {}, InputError, "repeat"),
        ("S2L1C", {"modalities": ["S2L1C"]}, UnknownModalityError, "cannot be generated"),
        ("LULC", {"top_p": 1.5}, InputError, "top_p"),
        ("S1GRD", {"timesteps": 0}, InputError, "timesteps"),
    ],
)
def test_bad_generation_requests(cube, micro, targets, options, error, match):
    with pytest.raises(error, match=match) as raised:
        cube.terramind.generate(targets, micro, **options)
    assert isinstance(raised.value, XterramindError)


def test_a_target_that_is_already_an_input_is_refused(cube, micro):
    l2a = cube.drop_sel(band="B10")
    with pytest.raises(InputError, match="inputs already"):
        l2a.terramind.generate("S2L2A", micro)


def test_prepare_declares_the_generate_verb_with_its_sampling_and_outputs(cube, micro):
    prepared = generate.prepare(cube, micro, targets=["DEM", "LULC"], seed=3, top_k=5, top_p=0.5, temperature=0.7,
                                timesteps=4, blend=False, chunks=7)
    assert prepared.verb is generate.GENERATE and prepared.verb.stitch == PIXELS and prepared.cover
    job = prepared.job
    assert job.targets == ("tok_DEM", "tok_LULC") and (job.seed, job.blend) == (3, False)
    assert (job.sampling.top_k, job.sampling.top_p, job.sampling.temperature, job.sampling.timesteps) == (5, 0.5, 0.7, 4)
    assert set(prepared.outputs) == {"DEM", "LULC", "LULC_probability"} and prepared.scale == 16
    result = prepared.lazy()
    attrs = result.attrs
    assert (attrs["top_k"], attrs["top_p"], attrs["temperature"], attrs["timesteps"], attrs["blend"]) == (5, 0.5, 0.7, 4, 0)
    assert attrs["targets"] == ["DEM", "LULC"] and attrs["seed"] == 3 and attrs["chunks"] == 7
    assert result.LULC.data.chunks == ((112,) * 4 + (32,),) * 2  # 7-token regions on the pixel grid
    assert set(generate.generate(cube, "LULC", micro).data_vars) == {"LULC", "LULC_probability"}


@pytest.mark.parametrize("option, value, message", [
    ("top_k", -1, "top_k must be a whole number of at least 0"),
    ("temperature", -0.5, "temperature must be a number of at least 0"),
    ("seed", 1.5, "seed must be a whole number"),
    ("blend", "yes", "blend must be True or False"),
])
def test_bad_sampling_options_are_refused_by_their_name(cube, micro, option, value, message):
    with pytest.raises(OptionError, match=message):
        generate.prepare(cube, micro, targets="LULC", **{option: value})


# -- probabilities: how LULC_probability is stored ------------------------------------------------------------------


@pytest.fixture(scope="module")
def holed(cube):
    """448 x 224 px of the scene, the top 256 px rows nodata: 6-token regions of the first row read no valid pixel."""
    values = cube.values[:, :448, :224].copy()
    values[:, :256] = 0
    return cube.isel(y=slice(0, 448), x=slice(0, 224)).copy(data=values).rio.write_nodata(0).chunk({"y": 224, "x": 224})


@pytest.fixture(scope="module")
def holed_lulc(holed, micro):
    return holed.terramind.generate("LULC", micro, seed=7, chunks=6).compute()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_uint8_probabilities_keep_the_classes_and_read_back_within_1_508(holed, holed_lulc, micro, zarr_format,
                                                                        tmp_path):
    packed = holed.terramind.generate("LULC", micro, seed=7, chunks=6, probabilities="uint8")
    attrs = packed.LULC_probability.attrs
    assert packed.LULC_probability.dtype == np.uint8 and (attrs["scale_factor"], attrs["_FillValue"]) == (1 / 254, 255)
    report = packed.terramind.to_zarr(tmp_path / "lulc.zarr", zarr_format=zarr_format)
    assert report.empty > 0  # regions without a valid pixel: their nodata comes from the store
    stored = xr.open_zarr(tmp_path / "lulc.zarr")  # xarray alone decodes the packing
    np.testing.assert_array_equal(stored.LULC.values, holed_lulc.LULC.values)  # the argmax of the float blend
    probability, exact = stored.LULC_probability.values, holed_lulc.LULC_probability.values
    assert probability.dtype.kind == "f" and np.isnan(exact).any() and not np.isnan(exact).all()
    np.testing.assert_array_equal(np.isnan(probability), np.isnan(exact))
    assert np.nanmax(np.abs(probability - exact)) <= 1 / 508 + 1e-6
    assert np.nanmax(np.abs(probability - exact)) > 1e-4  # packed, not a copy
    floats = xterramind.dequantize(xterramind.open(tmp_path / "lulc.zarr")).LULC_probability
    assert floats.dtype == np.float32 and floats.rio.crs == holed.rio.crs
    np.testing.assert_allclose(floats.values, probability, atol=1e-6)
    assert packed.LULC_probability.nbytes == exact.nbytes // 4


def test_probabilities_none_or_false_are_not_stored_and_the_classes_stay(holed, holed_lulc, micro, tmp_path):
    for off in (None, False):
        assert set(generate.prepare(holed, micro, targets="LULC", probabilities=off).outputs) == {"LULC"}
        assert set(generate.prepare(holed, micro, targets=["DEM", "LULC"], probabilities=off).outputs) == {"DEM", "LULC"}
        assert set(holed.terramind.generate("LULC", micro, probabilities=off).data_vars) == {"LULC"}
    holed.terramind.generate("LULC", micro, seed=7, chunks=6, probabilities=None).terramind.to_zarr(tmp_path / "l.zarr")
    stored = xterramind.open(tmp_path / "l.zarr")
    assert set(stored.data_vars) == {"LULC"}
    np.testing.assert_array_equal(stored.LULC.values, holed_lulc.LULC.values)


@pytest.mark.parametrize("value", ["uint16", "float16", "none", "", True, 1, 0, np.float64, ["uint8"]])
def test_a_probabilities_value_not_offered_is_an_option_error_naming_those_that_are(cube, micro, value):
    with pytest.raises(OptionError, match=r"probabilities must be 'uint8', 'float32' or None \(not stored\), got "):
        cube.terramind.generate("LULC", micro, probabilities=value)


def test_probabilities_may_be_given_as_numpy_spells_them(cube, micro):
    assert cube.terramind.generate("LULC", micro, probabilities=np.uint8).LULC_probability.dtype == np.uint8
    assert generate.prepare(cube, micro, targets="LULC", probabilities=np.dtype("float32")).job.probabilities == "float32"
