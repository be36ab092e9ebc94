"""The token verbs on the bundled real scene: ``tokenize`` (pixels -> ids on the token grid) and ``detokenize``
(ids -> pixels on the 16x finer grid), their nodata, their declarations and their errors."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from xterramind import tokens as token_verbs
from xterramind.errors import InputError, OptionError
from xterramind.facts import LULC_NODATA, TOKEN_NODATA
from xterramind.models.handle import TerraMindModel
from xterramind.verb import PIXELS, TOKENS


@pytest.fixture(scope="module")
def ids(cube, micro):
    """The scene's S2L2A tokens, in memory."""
    return cube.terramind.tokenize("S2L2A", micro).compute()


def test_tokens_round_trip_through_the_grids(cube, micro, ids):
    assert ids.dtype == np.int32 and ids.dims == ("y", "x") and ids.shape == (30, 30)
    assert ids.rio.crs == cube.rio.crs and ids.rio.transform().a == 160
    values = ids.values
    assert values.min() >= 0 and values.max() < 15360
    np.testing.assert_array_equal(cube.chunk({"y": 100, "x": 77}).terramind.tokenize("S2L2A", micro, chunks=7).values, values)
    pixels = ids.terramind.detokenize("S2L2A", micro, timesteps=1).compute()
    assert pixels.S2L2A.shape == (12, 480, 480) and pixels.rio.transform() == cube.rio.transform()
    lulc = (ids % 4375).terramind.detokenize("LULC", micro).compute()
    assert lulc.LULC.dtype == np.uint8 and np.isfinite(lulc.LULC_probability.values).all()


def test_tokens_of_pixels_that_are_all_nodata_are_minus_one(cube, micro, ids):
    values = cube.values.copy()
    values[:, :40, :] = 0  # token rows 0-1 and most of row 2
    values[:, 40:48, :32] = 0  # the rest of row 2 in columns 0-1
    holed = cube.copy(data=values).rio.write_nodata(0)
    got = holed.terramind.tokenize("S2L2A", micro).values
    empty = np.zeros((30, 30), bool)
    empty[:2] = True
    empty[2, :2] = True
    np.testing.assert_array_equal(got == TOKEN_NODATA, empty)
    assert (got[12:] == ids.values[12:]).all()  # owned by the tiles below, which saw no nodata
    assert (got[2:12] != ids.values[2:12]).any()  # a tile with nodata in it: invalid pixels at the band mean


def test_detokenize_skips_tiles_of_nodata_tokens_and_leaves_their_pixels_empty(micro, ids, monkeypatch):
    passes = []
    original = TerraMindModel.detokenize
    monkeypatch.setattr(TerraMindModel, "detokenize",
                        lambda self, name, grids, **kw: passes.append(len(grids)) or original(self, name, grids, **kw))
    grid = ids.where(ids < 0, ids % 4375).copy()
    grid[:14] = TOKEN_NODATA  # every token of the top row of tiles (origin 0, 14 tokens)
    lulc = grid.terramind.detokenize("LULC", micro).compute()
    assert sum(passes) == 6  # of the 9 tiles, the 3 at row 0 had no valid token
    assert (lulc.LULC.values[:224] == LULC_NODATA).all() and np.isnan(lulc.LULC_probability.values[:, :224]).all()
    assert np.isfinite(lulc.LULC_probability.values[:, 224:]).all()


def test_the_token_verbs_are_declared_with_their_outputs_and_attributes(cube, micro, ids):
    tokenize = token_verbs.prepare_tokenize(cube, micro, modality="S2L2A", chunks=7)
    assert tokenize.verb is token_verbs.TOKENIZE and tokenize.verb.stitch == TOKENS and not tokenize.cover
    assert tokenize.outputs == {"tokens": (np.int32, ())} and tokenize.job.modality == "S2L2A"
    attrs = tokenize.lazy().attrs
    assert (attrs["product"], attrs["tokenizer"], attrs["nodata"], attrs["chunks"]) == ("tokens", "S2L2A", -1, 7)
    assert attrs["vocab_size"] == 15360 and attrs["tokenizer_weights"] == micro.tokenizer_weights_id("S2L2A")
    detokenize = token_verbs.prepare_detokenize(ids, micro, modality="DEM", seed=2, timesteps=3)
    assert detokenize.verb is token_verbs.DETOKENIZE and detokenize.verb.stitch == PIXELS and detokenize.cover
    assert detokenize.layout.tiles.token_input and detokenize.layout.tiles.window_unit == 16
    assert detokenize.layout.tiling.grid.shape == (480, 480) and detokenize.scale == 16
    assert (detokenize.job.targets, detokenize.job.seed, detokenize.job.sampling.timesteps) == (("tok_DEM",), 2, 3)
    result = detokenize.lazy()
    assert set(result.data_vars) == {"DEM"} and result.DEM.dims == ("DEM_band", "y", "x")
    assert result.attrs["timesteps"] == 3 and result.attrs["tokenizers"] == {"DEM": micro.tokenizer_weights_id("DEM")}
    assert token_verbs.tokenize(cube, "S2L2A", micro).dims == ("y", "x")  # the lazy results the accessor gives
    assert set(token_verbs.detokenize(ids, "LULC", micro).data_vars) == {"LULC", "LULC_probability"}


def test_tokenize_reads_only_image_modalities_from_a_cube(cube, micro):
    with pytest.raises(InputError, match=r"tokenize reads LULC from a cube only for S2L2A, S1GRD, S1RTC and DEM; "
                                         r"for LULC tensors use model.tokenize\(\)"):
        cube.terramind.tokenize("LULC", micro)


def test_detokenize_needs_a_grid_of_integer_ids(micro, ids):
    with pytest.raises(InputError, match=r"needs a DataArray of token ids with dims \(y, x\)"):
        token_verbs.prepare_detokenize(ids.to_dataset(), micro, modality="LULC")
    with pytest.raises(InputError, match=r"with dims \(y, x\)"):
        token_verbs.prepare_detokenize(ids.rename(x="lon"), micro, modality="LULC")
    with pytest.raises(InputError, match="token ids must be integers, got float64"):
        token_verbs.prepare_detokenize(ids.astype(float), micro, modality="LULC")
    with pytest.raises(OptionError, match="timesteps must be a whole number of at least 1"):
        token_verbs.prepare_detokenize(ids, micro, modality="S2L2A", timesteps=0)


def test_token_grids_with_time_give_pixels_with_time(micro, ids):
    stack = xr.concat([ids % 4375, ids % 7], dim="time").isel(y=slice(0, 14), x=slice(0, 14))
    lulc = stack.terramind.detokenize("LULC", micro)
    assert lulc.LULC.dims == ("time", "y", "x") and lulc.LULC.shape == (2, 224, 224)
    values = lulc.LULC_probability.values
    assert np.isfinite(values).all() and not np.allclose(values[0], values[1])
