"""Generation on the bundled real scene: determinism, chunk invariance, georeferencing, seams, tokens, TiM."""

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import torch
import xarray as xr

from xterramind.errors import InputError, UnknownModalityError, XterramindError
from xterramind.grid import Tiling
from xterramind.modalities import grid_of, resolve
from xterramind.models.handle import TerraMindModel
from xterramind.seams import boundaries, seam_excess


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


def test_tokens_round_trip_through_the_grids(cube, micro):
    tokens = cube.terramind.tokenize("S2L2A", micro)
    assert tokens.dtype == np.int32 and tokens.dims == ("y", "x") and tokens.shape == (30, 30)
    assert tokens.rio.crs == cube.rio.crs and tokens.rio.transform().a == 160
    values = tokens.values
    assert values.min() >= 0 and values.max() < 15360
    np.testing.assert_array_equal(cube.chunk({"y": 100, "x": 77}).terramind.tokenize("S2L2A", micro, chunks=7).values, values)
    pixels = tokens.terramind.detokenize("S2L2A", micro, timesteps=1).compute()
    assert pixels.S2L2A.shape == (12, 480, 480) and pixels.rio.transform() == cube.rio.transform()
    lulc = (tokens % 4375).terramind.detokenize("LULC", micro).compute()
    assert lulc.LULC.dtype == np.uint8 and np.isfinite(lulc.LULC_probability.values).all()


def test_thinking_in_modalities_adds_generated_lulc_to_the_embedding(cube, micro):
    plain = cube.terramind.embed(micro).values
    thinking = cube.terramind.embed(micro, tim=["LULC"], seed=5)
    assert thinking.attrs["tim"] == ["tok_LULC"] and thinking.attrs["seed"] == 5
    values = thinking.values
    assert not np.allclose(values, plain)
    np.testing.assert_array_equal(cube.terramind.embed(micro, tim=["LULC"], seed=5, chunks=7).values, values)
    assert not np.allclose(cube.terramind.embed(micro, tim=["LULC"], seed=6).values, values)


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
