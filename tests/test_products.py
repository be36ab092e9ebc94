"""``xterramind.products``: what generate and detokenize blend, the products blended means become (LULC classes
after blending, images in physical units) and the georeferenced Dataset they make."""

import dask.array as da
import numpy as np
import pytest
import torch

import xterramind
from xterramind import products
from xterramind.engine import lay_out, provenance
from xterramind.facts import LULC_CLASSES, LULC_NODATA
from xterramind.models.registry import token_spec
from xterramind.models.sampling import Sampling


def test_each_token_modality_decodes_to_a_pixel_product_with_its_bands():
    assert products.pixel_spec(token_spec("S1GRD")) == ("S1GRD", ("VV", "VH"))
    assert products.pixel_spec(token_spec("tok_S2L2A"))[1][:3] == ("B01", "B02", "B03")
    assert products.pixel_spec(token_spec("LULC")) == ("LULC", ("LULC",))
    assert products.pixel_spec(token_spec("NDVI")) == ("NDVI", ("NDVI",))


def test_lulc_gives_classes_and_their_probabilities_and_images_their_bands():
    specs = [token_spec(name) for name in ("LULC", "S1GRD", "DEM")]
    assert products.outputs(specs) == {"LULC": (np.uint8, ()), "LULC_probability": (np.float32, (len(LULC_CLASSES),)),
                                       "S1GRD": (np.float32, (2,)), "DEM": (np.float32, (1,))}
    job = products.PixelJob(None, tuple(spec.name for spec in specs), Sampling(), 0, blend=False)
    assert products.blending(job) == {"channels": {"LULC": 10, "S1GRD": 2, "DEM": 1}, "blend": False}


def test_lulc_blends_probabilities_and_images_blend_as_they_are():
    logits = torch.randn(2, 10, 4, 4, generator=torch.Generator().manual_seed(0)) * 5
    probability = products.as_blended("LULC", logits)
    torch.testing.assert_close(probability.sum(dim=1), torch.ones(2, 4, 4))
    assert (probability >= 0).all() and (probability.argmax(dim=1) == logits.argmax(dim=1)).all()
    image = torch.randn(2, 2, 4, 4)
    assert products.as_blended("S1GRD", image) is image


def test_classes_are_the_argmax_of_blended_probabilities_and_images_come_back_in_physical_units(micro):
    # three tiles: one sure of class 1, two leaning to class 2; most tiles say 2, their blended probabilities say 1
    sure, unsure = torch.zeros(10), torch.zeros(10)
    sure[1], sure[2], unsure[1], unsure[2] = 0.9, 0.1, 0.2, 0.45
    assert sure.argmax() == 1 and unsure.argmax() == 2 and ((sure + 2 * unsure) / 3).argmax() == 1
    mean = ((sure + 2 * unsure) / 3)[:, None, None].repeat(1, 2, 2)
    mean[:, 0, 0] = torch.tensor([0.0, 0.1, 0.2, 0.7, 0, 0, 0, 0, 0, 0])
    mask = torch.tensor([[True, True], [True, False]])
    mean[:, ~mask] = float("nan")
    standardized = torch.full((2, 2, 2), 0.5)
    job = products.PixelJob(None, ("tok_LULC", "tok_S1GRD"), Sampling(), 0)
    out = products.finish(job, micro, ({"LULC": mean.clone(), "S1GRD": standardized}, mask))
    assert set(out) == {"LULC", "LULC_probability", "S1GRD"} and out["LULC"].dtype == np.uint8
    np.testing.assert_array_equal(out["LULC"], [[3, 1], [1, LULC_NODATA]])
    np.testing.assert_array_equal(np.isnan(out["LULC_probability"]), np.broadcast_to(~mask.numpy(), (10, 2, 2)))
    np.testing.assert_allclose(out["S1GRD"], micro.denormalize("S1GRD", standardized).numpy())
    assert not np.allclose(out["S1GRD"], 0.5)  # dB, not standardized


@pytest.fixture(scope="module")
def layout(cube, micro):
    return lay_out(cube.isel(y=slice(0, 250), x=slice(0, 330)), micro, chunks=7)  # 15 x 20 tokens, ragged pixels


def test_the_pixel_dataset_is_georeferenced_on_its_token_regions_pixel_grid(layout, micro):
    tokens = layout.tiling.tokens
    height, width = tokens.height * 16, tokens.width * 16
    assert (height, width) == (240, 320)  # the token grid's pixels: the last partial token dropped
    specs = [token_spec("LULC"), token_spec("S1GRD")]
    arrays = {"LULC": da.zeros((height, width), dtype=np.uint8), "LULC_probability": da.zeros((10, height, width)),
              "S1GRD": da.zeros((2, height, width), dtype=np.float32)}
    attrs = provenance(micro, ["S2L1C"], 5, layout) | {"blend": 1}
    dataset = products.pixel_dataset(arrays, layout, layout.tiling.grid, specs, attrs)
    assert dataset.LULC.dims == ("y", "x") and dataset.LULC_probability.dims == ("class", "y", "x")
    assert dataset.S1GRD.dims == ("S1GRD_band", "y", "x") and dataset.S1GRD.attrs["band_names"] == ["VV", "VH"]
    assert dataset.S1GRD.attrs["units"] == "dB" and list(dataset["class"].values) == list(range(10))
    lulc = dataset.LULC.attrs
    assert lulc["flag_values"] == list(range(10)) and lulc["nodata"] == LULC_NODATA
    assert lulc["flag_meanings"].split() == ["no_data", "water", "trees", "flooded_vegetation", "crops", "built_area",
                                             "bare_ground", "snow_ice", "clouds", "rangeland"]
    assert dataset.LULC_probability.attrs["class_names"] == list(LULC_CLASSES)
    assert dataset.attrs["product"] == "generation" and dataset.attrs["targets"] == ["LULC", "S1GRD"]
    assert all(var.attrs["seed"] == 5 and var.attrs["model"] == "terramind_micro" for var in dataset.data_vars.values())
    assert dataset.rio.crs.to_epsg() == 32618 and dataset.LULC.rio.crs.to_epsg() == 32618
    assert dataset.rio.transform() == layout.tiling.grid.transform and dataset.rio.shape == (240, 320)
    np.testing.assert_allclose(dataset.x.values[[0, -1]], layout.tiling.grid.transform.c + 10 * np.array([0.5, 319.5]))


# -- probabilities: how LULC_probability is stored ------------------------------------------------------------------


def test_probabilities_are_declared_as_they_are_stored():
    specs = [token_spec("LULC"), token_spec("DEM")]
    assert products.outputs(specs, "uint8")["LULC_probability"] == (np.uint8, (len(LULC_CLASSES),))
    assert products.outputs(specs, "float32")["LULC_probability"] == (np.float32, (len(LULC_CLASSES),))
    assert set(products.outputs(specs, None)) == {"LULC", "DEM"}
    assert [products.probabilities_option(v) for v in ("uint8", np.uint8, "float32", None, False)] == [
        "uint8", "uint8", "float32", None, None]


def _blended():
    """One region's blended LULC probabilities (2 x 2 px; one pixel nodata) and its mask."""
    mean = torch.tensor([0.0, 1 / 508 - 1e-4, 0.5, 0.2, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025])[:, None, None].repeat(1, 2, 2)
    mean[:, 0, 1] = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0])
    mean[:, 1, 0] = torch.tensor([0.0, 0.199, 0.4, 0.401, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 2 and 3: one code, 102
    mask = torch.tensor([[True, True], [True, False]])
    mean[:, ~mask] = float("nan")
    return mean, mask


def test_uint8_probabilities_are_rounded_to_254ths_with_255_where_nodata_and_the_classes_from_the_floats(micro):
    mean, mask = _blended()
    exact = products.finish(products.PixelJob(None, ("tok_LULC",), Sampling(), 0), micro, ({"LULC": mean.clone()}, mask))
    job = products.PixelJob(None, ("tok_LULC",), Sampling(), 0, probabilities="uint8")
    packed = products.finish(job, micro, ({"LULC": mean.clone()}, mask))
    np.testing.assert_array_equal(packed["LULC"], exact["LULC"])
    np.testing.assert_array_equal(packed["LULC"], [[2, 4], [3, LULC_NODATA]])  # the float blend's argmax ...
    codes = packed["LULC_probability"]
    assert codes[2, 1, 0] == codes[3, 1, 0] == 102 and codes[:, 1, 0].argmax() == 2  # ... not the codes'
    assert codes.dtype == np.uint8 and (codes[:, 1, 1] == 255).all() and (codes[:, mask.numpy()] <= 254).all()
    decoded = np.where(codes == 255, np.nan, codes / 254.0)
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(exact["LULC_probability"]))
    assert np.nanmax(np.abs(decoded - exact["LULC_probability"])) <= 1 / 508 + 1e-7
    assert codes[1, 0, 0] == 0 and codes[2, 0, 0] == 127  # 1/508 - 1e-4 rounds down; 0.5 is 127/254
    off = products.finish(products.PixelJob(None, ("tok_LULC",), Sampling(), 0, probabilities=None), micro,
                          ({"LULC": mean.clone()}, mask))
    assert set(off) == {"LULC"}
    np.testing.assert_array_equal(off["LULC"], exact["LULC"])


def test_uint8_probabilities_carry_the_cf_packing_xarray_decodes(layout, micro):
    tokens = layout.tiling.tokens
    height, width = tokens.height * 16, tokens.width * 16
    codes = np.full((10, height, width), 127, np.uint8)
    codes[:, 0, 0] = 255
    arrays = {"LULC": da.zeros((height, width), dtype=np.uint8), "LULC_probability": da.from_array(codes)}
    dataset = products.pixel_dataset(arrays, layout, layout.tiling.grid, [token_spec("LULC")], provenance(micro, [], 0))
    attrs = dataset.LULC_probability.attrs
    assert (attrs["scale_factor"], attrs["_FillValue"], attrs["nodata"]) == (np.float32(1 / 254), 255, 255)
    import xarray as xr

    decoded = xr.decode_cf(dataset).LULC_probability.values
    assert np.isnan(decoded[:, 0, 0]).all() and np.allclose(decoded[:, 1:, 1:], 0.5)
    floats = xterramind.dequantize(dataset).LULC_probability
    assert floats.dtype == np.float32 and {"scale_factor", "_FillValue", "nodata"}.isdisjoint(floats.attrs)
    np.testing.assert_array_equal(floats.values, decoded.astype(np.float32))
    assert floats.attrs["class_names"] == list(LULC_CLASSES) and floats.rio.crs == dataset.rio.crs
    without = products.pixel_dataset({"LULC": arrays["LULC"]}, layout, layout.tiling.grid, [token_spec("LULC")], {})
    assert set(without.data_vars) == {"LULC"}


def test_most_likely_is_argmax_over_classes_taking_the_first_of_ties():
    generator = torch.Generator().manual_seed(3)
    values = torch.randint(0, 4, (10, 37, 41), generator=generator).float() / 4  # many ties
    assert products.most_likely(values).dtype == torch.uint8
    np.testing.assert_array_equal(products.most_likely(values).numpy(), values.numpy().argmax(axis=0))
    smooth = torch.rand(10, 5, 7, generator=generator)
    np.testing.assert_array_equal(products.most_likely(smooth).numpy(), smooth.argmax(dim=0).numpy())
