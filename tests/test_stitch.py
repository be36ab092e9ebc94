"""``xterramind.stitch``: a region's block from its tiles' outputs, with outputs made up so that each tile says
who it is and where each of its values comes from (tokens owned by the lattice, or pixels blended)."""

import numpy as np
import pytest
import torch
from affine import Affine

from xterramind.grid import PixelGrid, Tiling, regions
from xterramind.stitch import BlendedPixels, OwnedTokens
from xterramind.tiles import Tiles, tiles_with_data

# the bundled scene's lattice: 30 x 30 tokens, 14-token tiles at 0, 11 and 16 along each axis (stride 12)
SCENE = Tiling(PixelGrid("EPSG:32618", Affine(10, 0, 443_000, 0, -10, 4_172_000), 480, 480))
TILES = Tiles(("S2L2A",), ((None,) * 12,), SCENE, None)
COLUMNS = len(SCENE.cols.origins)


def _window_shape(region) -> tuple[int, int]:
    return tuple(span.window[1] - span.window[0] for span in (region.y, region.x))


def _tile_number(ref) -> int:
    return ref.index[0] * COLUMNS + ref.index[1]


def _owner(axis, token: int) -> int:
    (owner,) = [i for i, (start, stop) in enumerate(axis.owned) if start <= token < stop]
    return owner


def _token_outputs(batch) -> dict[str, torch.Tensor]:
    """Per tile: its number at every token ("owner"), and every token's global (row, col) ("where")."""
    owner = torch.stack([torch.full((14, 14), _tile_number(ref), dtype=torch.int32) for ref in batch])
    where = torch.stack([torch.stack(torch.meshgrid(torch.arange(14) + ref.origin[0], torch.arange(14) + ref.origin[1],
                                                    indexing="ij")).float() for ref in batch])
    return {"owner": owner, "where": where}


TOKEN_BLOCKS = {"owner": (torch.int32, (), -1), "where": (torch.float32, (2,), float("nan"))}


@pytest.mark.parametrize("chunk", [12, 7, 30])
def test_owned_tokens_put_every_token_of_the_grid_where_it_belongs_from_the_tile_owning_it(chunk):
    owner, where = np.full((30, 30), -1), np.full((2, 30, 30), np.nan)
    for row in regions(SCENE, chunk):
        for region in row:
            valid = np.ones(_window_shape(region), bool)
            refs = tiles_with_data(region, valid, TILES)
            stitched = OwnedTokens(region, TILES, TOKEN_BLOCKS)
            for start in range(0, len(refs), 2):  # in batches of two tiles
                stitched.add(refs[start : start + 2], _token_outputs(refs[start : start + 2]))
            blocks = stitched.result(valid)
            assert blocks["owner"].dtype == torch.int32 and blocks["where"].shape == (2, *region.shape)
            (y0, y1), (x0, x1) = region.y.tokens, region.x.tokens
            owner[y0:y1, x0:x1], where[:, y0:y1, x0:x1] = blocks["owner"].numpy(), blocks["where"].numpy()
    np.testing.assert_array_equal(where, np.stack(np.meshgrid(np.arange(30), np.arange(30), indexing="ij")))
    expected = [[_owner(SCENE.rows, y) * COLUMNS + _owner(SCENE.cols, x) for x in range(30)] for y in range(30)]
    np.testing.assert_array_equal(owner, expected)


def test_tokens_whose_pixels_are_all_invalid_get_each_outputs_nodata():
    region = regions(SCENE, 12)[0][0]
    valid = np.ones(_window_shape(region), bool)
    valid[32:48, 48:64] = False  # all of token (2, 3)
    valid[80:96, 80:95] = False  # token (5, 5) but one column of pixels
    refs = tiles_with_data(region, valid, TILES)
    stitched = OwnedTokens(region, TILES, TOKEN_BLOCKS)
    stitched.add(refs, _token_outputs(refs))
    blocks = stitched.result(valid)
    empty = np.zeros((12, 12), bool)
    empty[2, 3] = True
    np.testing.assert_array_equal(blocks["owner"].numpy() == -1, empty)
    np.testing.assert_array_equal(np.isnan(blocks["where"].numpy()), np.broadcast_to(empty, (2, 12, 12)))
    assert blocks["where"][:, 5, 5].tolist() == [5.0, 5.0]
    nothing = OwnedTokens(region, TILES, TOKEN_BLOCKS).result(np.zeros_like(valid))  # no tile ran
    assert (nothing["owner"] == -1).all() and nothing["where"].isnan().all()


def _blend(region, valid, outputs, *, blend=True, refs=None):
    refs = tiles_with_data(region, valid, TILES) if refs is None else refs
    stitched = BlendedPixels(region, TILES, {"image": 3}, blend=blend)
    for start in range(0, len(refs), 4):
        batch = refs[start : start + 4]
        stitched.add(batch, {"image": torch.stack([outputs(ref) for ref in batch])})
    return stitched.result(valid)


def _scene_map(chunk, outputs, *, blend=True) -> np.ndarray:
    """The blended ``(3, 480, 480)`` map of the scene, from its covering regions of ``chunk`` tokens."""
    out = np.full((3, 480, 480), np.nan)
    for row in regions(SCENE, chunk, cover=True):
        for region in row:
            means, mask = _blend(region, np.ones(_window_shape(region), bool), outputs, blend=blend)
            assert mask.all() and means["image"].shape == (3, region.shape[0] * 16, region.shape[1] * 16)
            (y0, y1), (x0, x1) = (np.array(span.tokens) * 16 for span in (region.y, region.x))
            out[:, y0:y1, x0:x1] = means["image"].numpy()
    return out


@pytest.mark.parametrize("chunk", [12, 7])
def test_blending_tiles_that_agree_gives_their_value_the_weights_summing_to_one(chunk):
    constant = torch.tensor([1.5, -2.0, 7.0])[:, None, None].expand(3, 224, 224)
    blended = _scene_map(chunk, lambda ref: constant)
    np.testing.assert_allclose(blended, np.broadcast_to(constant[:, :1, :1].numpy(), (3, 480, 480)), rtol=0, atol=1e-5)


def test_without_blending_every_pixel_comes_from_the_tile_owning_its_token_and_with_it_a_mean_of_its_tiles():
    def numbered(ref):
        return torch.full((3, 224, 224), float(_tile_number(ref)))

    cropped = _scene_map(7, numbered, blend=False)
    owners = np.array([[_owner(SCENE.rows, y) * COLUMNS + _owner(SCENE.cols, x) for x in range(30)] for y in range(30)])
    owners = owners.repeat(16, axis=0).repeat(16, axis=1)  # a token's pixels
    np.testing.assert_array_equal(cropped, np.broadcast_to(owners, (3, 480, 480)))
    blended = _scene_map(7, numbered)[0]
    # rows 176-224 are shared by the tiles at 0 and 11 (numbers 0 and 3 in the first column): a ramp between them
    ramp = blended[176:224, 100]
    assert ramp[0] > 0 and ramp[-1] < 3 and (np.diff(ramp) > 0).all()
    assert (blended[:176, 100] == 0).all() and np.isclose(blended[230, 100], 3)


def test_pixels_no_tile_reached_or_whose_input_was_invalid_are_nan():
    region = regions(SCENE, 30, cover=True)[0][0]
    valid = np.ones((480, 480), bool)
    valid[10:12, 20:23] = False
    refs = tiles_with_data(region, valid, TILES)
    means, mask = _blend(region, valid, lambda ref: torch.ones(3, 224, 224), refs=refs[:1])  # only the tile at (0, 0)
    reached = np.zeros((480, 480), bool)
    reached[:224, :224] = True
    np.testing.assert_array_equal(mask.numpy(), reached & valid)
    image = means["image"].numpy()
    np.testing.assert_array_equal(np.isnan(image), np.broadcast_to(~(reached & valid), (3, 480, 480)))
    np.testing.assert_allclose(image[:, reached & valid], 1.0, rtol=0, atol=1e-6)
