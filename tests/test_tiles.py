"""``xterramind.tiles`` on small cases worked out by hand: valid pixels, the tiles of a region that have data,
their batches for the model, tile centres, empty tokens and crops."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from affine import Affine
from pyproj import Transformer

from xterramind.errors import InputError
from xterramind.grid import PixelGrid, Tiling, region_at, regions
from xterramind.tiles import (
    DEFAULT_BATCH,
    TileRef,
    Tiles,
    batches,
    crop_to_region,
    empty_tokens,
    tile_batches,
    tile_centres,
    tiles_with_data,
    valid_pixels,
)

TRANSFORM = Affine(10, 0, 443_000, 0, -10, 4_172_000)
# the bundled scene's lattice: 30 x 30 tokens, 14-token tiles at 0, 11 and 16 along each axis (stride 12)
SCENE = Tiling(PixelGrid("EPSG:32618", TRANSFORM, 480, 480))


def _tiles(**options) -> Tiles:
    return Tiles(("S2L2A",), ((None,) * 12,), SCENE, options.pop("batch_size", None), **options)


def _window(region) -> tuple[slice, slice]:
    return tuple(slice(*span.window) for span in (region.y, region.x))


def test_a_pixel_is_valid_where_every_band_of_every_modality_is_finite_and_not_its_nodata():
    s2 = np.full((2, 2, 3, 4), 1000.0, dtype=np.float32)  # (time, band, y, x)
    s2[0, 0, 0, 0] = np.nan
    s2[1, 1, 0, 1] = 5.0  # band 1's nodata
    s2[0, 0, 2, 3] = 5.0  # 5 in band 0 is a real value
    s1 = np.full((2, 1, 3, 4), 7, dtype=np.int16)
    s1[1, 0, 1, 1] = -9999
    valid = valid_pixels([s2, s1], [(None, 5.0), (-9999,)])
    expected = np.ones((2, 3, 4), bool)
    expected[0, 0, 0] = expected[1, 0, 1] = expected[1, 1, 1] = False
    np.testing.assert_array_equal(valid, expected)
    # a NaN nodata value means NaN, which is never valid anyway; integers are never NaN
    np.testing.assert_array_equal(valid_pixels([s2[:, :1]], [(float("nan"),)]), ~np.isnan(s2[:, 0]))
    assert valid_pixels([s1], [(None,)]).all()


def test_a_token_grid_is_valid_where_its_ids_are_not_negative_on_each_tokens_pixels():
    tiles = Tiles(("tok_LULC",), ((-1.0,),), SCENE, None, token_input=True)
    ids = np.array([[[3, -1, 0], [0, 0, -1]]], dtype=np.int32)  # (band, y, x) on the token grid
    valid = tiles.valid([ids])
    assert valid.shape == (32, 48)
    expected = np.ones((32, 48), bool)
    expected[:16, 16:32] = expected[16:, 32:] = False
    np.testing.assert_array_equal(valid, expected)


def test_the_batch_is_the_devices_default_unless_given_and_sizes_are_in_tokens_or_pixels():
    cuda = SimpleNamespace(device=torch.device("cuda"))
    cpu = SimpleNamespace(device=torch.device("cpu"))
    assert DEFAULT_BATCH == {"cpu": 8, "cuda": 64}
    assert _tiles().batch_for(cpu) == 8 and _tiles().batch_for(cuda) == 64
    assert _tiles(batch_size=3).batch_for(cuda) == 3
    tiles = _tiles()
    assert (tiles.tile_tokens, tiles.patch, tiles.window_unit) == (14, 16, 1)
    assert Tiles(("tok_LULC",), ((-1.0,),), SCENE, None, token_input=True).window_unit == 16
    assert [len(b) for b in batches(list(range(7)), 3)] == [3, 3, 1] and list(batches([], 3)) == []


def test_a_regions_tiles_with_data_say_where_their_owned_tokens_go():
    region = region_at(SCENE, 12, 1, 0)  # tokens 12-24 x 0-12: owned by the tile at (11, 0)
    assert region.y.window == (176, 400) and region.x.window == (0, 224)
    (ref,) = tiles_with_data(region, np.ones((224, 224), bool), _tiles())
    assert ref == TileRef((0, 0), (11, 0), (slice(1, 13), slice(0, 12)), (slice(0, 12), slice(0, 12)), (1, 0))
    assert TileRef.pixels(ref.part, 16) == (slice(16, 208), slice(0, 192))
    assert tiles_with_data(region, np.zeros((224, 224), bool), _tiles()) == []


def test_tiles_without_a_valid_pixel_are_left_out_of_a_covering_region():
    region = region_at(SCENE, 12, 1, 1, cover=True)  # tokens 12-24: tiles at 0, 11 and 16 cover them
    assert [origin for origin, _, _ in region.y.tiles] == [0, 11, 16] and region.y.window == (0, 480)
    valid = np.zeros((480, 480), bool)
    valid[5, 5] = True  # only in the tile at (0, 0)
    assert [ref.origin for ref in tiles_with_data(region, valid, _tiles())] == [(0, 0)]
    valid[300, 300] = True  # row and column 18: the tiles at 11 and 16, both ways
    found = [ref.origin for ref in tiles_with_data(region, valid, _tiles())]
    assert found == [(0, 0), (11, 11), (11, 16), (16, 11), (16, 16)]
    one = {ref.origin: ref for ref in tiles_with_data(region, valid, _tiles())}[(16, 11)]
    # a covering region takes every token the tile has in the region, not only those it owns
    assert one.part == (slice(0, 8), slice(1, 13)) and one.place == (slice(4, 12), slice(0, 12))


def _s2_window(shape, seed=0) -> np.ndarray:
    return (300 + 4000 * np.random.default_rng(seed).random((12, *shape))).astype(np.float32)


def test_tile_batches_cut_standardize_and_put_invalid_pixels_at_the_band_mean(micro):
    region = regions(SCENE, 30, cover=True)[0][0]  # the whole scene: 9 tiles
    window = _s2_window((480, 480))
    valid = np.ones((480, 480), bool)
    valid[0:16, 0:16] = valid[300, 310] = False
    refs = tiles_with_data(region, valid, _tiles())
    seen = []
    for batch, inputs in tile_batches(micro, [window], valid, [refs[:3], [], refs[3:]], _tiles(batch_size=4)):
        assert set(inputs) == {"S2L2A"} and inputs["S2L2A"].shape == (len(batch), 12, 224, 224)
        for ref, pixels in zip(batch, inputs["S2L2A"], strict=True):
            crop = tuple(slice(o * 16, o * 16 + 224) for o in ref.window_origin)
            expected = micro.normalize("S2L2A", torch.from_numpy(window[(slice(None), *crop)]))
            expected[:, ~torch.from_numpy(valid[crop])] = 0.0
            torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-6)
        seen.append(len(batch))
    assert seen == [3, 4, 2]  # every tile once, in batches of at most batch_size that never mix two groups
    assert (inputs["S2L2A"][-1, :, 300 - 256, 310 - 256] == 0).all()  # the hole, in the last tile, at (16, 16)


def test_tile_batches_check_the_units_of_every_window(micro):
    region = regions(SCENE, 30)[0][0]
    window = _s2_window((480, 480)) / 10000  # reflectance 0-1, not x 10000
    valid = np.ones((480, 480), bool)
    with pytest.raises(InputError, match="far too small for reflectance x 10000"):
        next(tile_batches(micro, [window], valid, [tiles_with_data(region, valid, _tiles())], _tiles()))
    batch, _ = next(tile_batches(micro, [window], valid, [tiles_with_data(region, valid, _tiles())],
                                 _tiles(check_input=False)))
    assert len(batch) == 8


def test_a_token_grid_is_cut_into_tiles_of_ids_with_nodata_as_token_0(micro):
    tiles = Tiles(("tok_LULC",), ((-1.0,),), SCENE, 5, token_input=True)
    ids = np.arange(900, dtype=np.int32).reshape(1, 30, 30)
    ids[0, 2, 3] = -1
    region = regions(SCENE, 30)[0][0]
    valid = tiles.valid([ids])
    got = [(batch, inputs["tok_LULC"]) for batch, inputs in tile_batches(micro, [ids], valid,
                                                                          [tiles_with_data(region, valid, tiles)], tiles)]
    assert [len(batch) for batch, _ in got] == [5, 4]
    for batch, grids in got:
        assert grids.dtype == torch.int64 and grids.shape == (len(batch), 14, 14)
        for ref, grid in zip(batch, grids, strict=True):
            y, x = ref.window_origin
            np.testing.assert_array_equal(grid.numpy(), np.maximum(ids[0, y : y + 14, x : x + 14], 0))
    assert got[0][1][0, 2, 3] == 0


def test_tile_centres_are_the_longitude_and_latitude_of_the_middle_of_each_tile():
    centres = tile_centres(SCENE, [(0, 0), (11, 16)])
    to_lonlat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    x = 443_000 + 10 * np.array([112, 16 * 16 + 112])  # pixel columns of the centres, from the grid's corner
    y = 4_172_000 - 10 * np.array([112, 11 * 16 + 112])
    np.testing.assert_allclose(centres, np.stack(to_lonlat.transform(x, y), axis=1), rtol=0, atol=1e-9)
    assert centres.shape == (2, 2) and -76 < centres[0, 0] < -75 and 37 < centres[0, 1] < 38  # longitude first


def test_empty_tokens_are_the_regions_tokens_without_a_valid_pixel():
    region = region_at(SCENE, 12, 1, 0)  # window rows 176-400 (tokens 11-25), region tokens 12-24
    valid = np.ones((224, 224), bool)
    valid[16:32, 0:16] = False  # the region's token (0, 0): all its pixels
    valid[32:48, 16:32] = False
    valid[40, 20] = True  # token (1, 1) keeps one valid pixel
    valid[0:16, :] = False  # window token row 11: outside the region
    expected = np.zeros((12, 12), bool)
    expected[0, 0] = True
    np.testing.assert_array_equal(empty_tokens(valid, region, 16), expected)


def test_a_window_is_cropped_to_its_region_in_pixels_or_in_tokens():
    region = region_at(SCENE, 12, 1, 0)
    rows = np.arange(176, 400)[:, None] + np.zeros((1, 224), int)  # each pixel's global row
    cropped = crop_to_region(rows, region, 16)
    assert cropped.shape == (192, 192) and cropped[0, 0] == 192 and cropped[-1, 0] == 383
    token_rows = np.arange(11, 25)[:, None] + np.zeros((1, 14), int)
    np.testing.assert_array_equal(crop_to_region(token_rows, region, 16, cell=16)[:, 0], np.arange(12, 24))
    assert crop_to_region(rows[None], region, 16).shape == (1, 192, 192)  # leading dims kept
