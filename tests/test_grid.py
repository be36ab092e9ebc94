"""``xterramind.grid`` on small cases worked out by hand: pixel grids, axis tilings, regions and their errors."""

import numpy as np
import pytest
from affine import Affine

from xterramind.errors import InputError
from xterramind.grid import (
    AxisTiling,
    PixelGrid,
    Tiling,
    default_chunk,
    region_at,
    region_counts,
    regions,
    row_span,
    same_crs,
)

UTM18N = "EPSG:32618"
TRANSFORM = Affine(10, 0, 443_000, 0, -10, 4_172_000)


@pytest.fixture
def scene() -> Tiling:
    """The bundled scene's lattice: 480 x 480 px = 30 x 30 tokens, 224-px tiles overlapping by 32 px (stride 12)."""
    return Tiling(PixelGrid(UTM18N, TRANSFORM, 480, 480))


def test_a_pixel_grid_gives_its_shape_pixel_centres_and_coarser_grids():
    grid = PixelGrid(UTM18N, TRANSFORM, 35, 50)
    assert grid.shape == (35, 50)
    np.testing.assert_array_equal(grid.x_coords()[:3], [443_005, 443_015, 443_025])
    np.testing.assert_array_equal(grid.y_coords()[:3], [4_171_995, 4_171_985, 4_171_975])
    coarse = grid.coarsened(16)  # partial blocks dropped
    assert coarse.shape == (2, 3) and coarse.transform == Affine(160, 0, 443_000, 0, -160, 4_172_000)
    np.testing.assert_array_equal(coarse.x_coords(), [443_080, 443_240, 443_400])


def test_pixel_grids_are_the_same_within_the_tolerance_and_for_any_spelling_of_the_crs():
    from pyproj import CRS

    grid = PixelGrid(UTM18N, TRANSFORM, 35, 50)
    assert grid.same_as(PixelGrid(CRS.from_epsg(32618).to_wkt(), TRANSFORM * Affine.translation(1e-7, 0), 35, 50))
    assert not grid.same_as(PixelGrid(UTM18N, TRANSFORM * Affine.translation(1, 0), 35, 50))  # one pixel off
    assert not grid.same_as(PixelGrid(UTM18N, TRANSFORM, 35, 51))
    assert not grid.same_as(PixelGrid("EPSG:32718", TRANSFORM, 35, 50))  # the southern zone
    assert same_crs(UTM18N, CRS.from_epsg(32618).to_wkt()) and not same_crs(UTM18N, "EPSG:32619")


def test_a_rotated_or_sheared_grid_is_refused():
    for transform in (TRANSFORM * Affine.rotation(10), Affine(10, 0.5, 443_000, 0, -10, 4_172_000)):
        with pytest.raises(InputError, match=r"rotated or sheared.*reproject it to a north-up grid"):
            PixelGrid(UTM18N, transform, 35, 50)


def test_an_axis_has_tiles_on_the_lattice_and_edge_tiles_shifted_inward():
    axis = AxisTiling(30, 14, 12)  # lattice origins 12k - 1: -1 and 23 are shifted to 0 and 16
    np.testing.assert_array_equal(axis.origins, [0, 11, 16])
    np.testing.assert_array_equal(axis.owned, [[0, 12], [12, 24], [24, 30]])
    np.testing.assert_array_equal(axis.tiles_owning(0, 12), [0])
    np.testing.assert_array_equal(axis.tiles_owning(10, 13), [0, 1])
    np.testing.assert_array_equal(axis.tiles_owning(0, 30), [0, 1, 2])
    np.testing.assert_array_equal(axis.tiles_covering(0, 11), [0])
    np.testing.assert_array_equal(axis.tiles_covering(12, 13), [0, 1])  # tile 0 reaches token 13
    np.testing.assert_array_equal(axis.tiles_covering(25, 30), [2])


def test_tiles_shifted_to_the_same_origin_are_merged():
    one = AxisTiling(14, 14, 2)  # seven lattice tiles, all clipped to origin 0
    np.testing.assert_array_equal(one.origins, [0])
    np.testing.assert_array_equal(one.owned, [[0, 14]])
    two = AxisTiling(15, 14, 12)
    np.testing.assert_array_equal(two.origins, [0, 1])
    np.testing.assert_array_equal(two.owned, [[0, 12], [12, 15]])


def test_an_axis_shorter_than_a_tile_is_refused():
    with pytest.raises(InputError, match="the axis has 13 tokens, fewer than one tile of 14"):
        AxisTiling(13, 14, 12)


def test_crop_weights_keep_the_pixels_of_the_tokens_a_tile_owns():
    np.testing.assert_array_equal(AxisTiling(3, 2, 2).crop_weights(1), [[1, 1], [0, 1]])
    np.testing.assert_array_equal(AxisTiling(3, 2, 1).crop_weights(2), [[1, 1, 0, 0], [1, 1, 1, 1]])


def test_blend_weights_ramp_across_the_pixels_two_tiles_share():
    axis = AxisTiling(3, 2, 1)  # tiles at 0 and 1, sharing token 1: pixels 2 and 3 of tile 0, 0 and 1 of tile 1
    rising = 0.5 - 0.5 * np.cos(np.pi * np.array([0.25, 0.75]))  # raised cosine at the shared pixels' centres
    np.testing.assert_allclose(axis.blend_weights(2), [[1, 1, *(1 - rising)], [*rising, 1, 1]], atol=1e-12)
    np.testing.assert_array_equal(AxisTiling(28, 14, 14).blend_weights(16), np.ones((2, 224)))  # no overlap


def test_a_tiling_lays_its_tiles_on_the_token_grid(scene):
    tokens = scene.tokens
    assert tokens.shape == (30, 30) and tokens.transform == Affine(160, 0, 443_000, 0, -160, 4_172_000)
    assert (scene.rows.length, scene.rows.tile, scene.rows.stride) == (30, 14, 12) and scene.cols == scene.rows
    assert scene.tile_count == 9
    odd = Tiling(PixelGrid(UTM18N, TRANSFORM, 250, 500), tile_size=64, overlap=32)  # 15 x 31 tokens, stride 2
    assert (odd.rows.length, odd.cols.length, odd.rows.tile, odd.rows.stride) == (15, 31, 4, 2)
    np.testing.assert_array_equal(odd.rows.origins, [0, 1, 3, 5, 7, 9, 11])  # 13 shifted to 11, merged


@pytest.mark.parametrize(("options", "message"), [
    ({"tile_size": 100}, "tile_size must be a positive multiple of 16 px, got 100"),
    ({"tile_size": 0}, "tile_size must be a positive multiple of 16 px, got 0"),
    ({"tile_size": -16}, "tile_size must be a positive multiple of 16 px, got -16"),
    ({"overlap": 16}, r"overlap must be a multiple of 32 px \(a whole token margin on each side\).*got 16"),
    ({"overlap": 224}, "overlap must be .* smaller than the tile, got 224"),
    ({"overlap": -32}, "overlap must be .*, got -32"),
])
def test_tile_sizes_and_overlaps_off_the_lattice_are_refused(options, message):
    with pytest.raises(InputError, match=message):
        Tiling(PixelGrid(UTM18N, TRANSFORM, 480, 480), **options)


def test_a_grid_smaller_than_one_tile_is_refused_with_a_tile_size_that_fits():
    with pytest.raises(InputError, match=r"100 x 300 px, smaller than one 224-px tile.*smaller tile_size.*e\.g\. 96\)"):
        Tiling(PixelGrid(UTM18N, TRANSFORM, 100, 300))
    with pytest.raises(InputError, match=r"e\.g\. 16\)"):
        Tiling(PixelGrid(UTM18N, TRANSFORM, 20, 300), tile_size=32, overlap=0)


def test_regions_gather_the_tiles_owning_their_tokens(scene):
    layout = regions(scene, 12)
    assert region_counts(scene, 12) == (3, 3) and [len(row) for row in layout] == [3, 3, 3]
    spans = [row[0].y for row in layout]
    assert [span.tokens for span in spans] == [(0, 12), (12, 24), (24, 30)]
    assert [span.tiles for span in spans] == [((0, 0, 12),), ((11, 12, 24),), ((16, 24, 30),)]
    assert [span.window for span in spans] == [(0, 224), (176, 400), (256, 480)]  # pixels: the tile, no more
    assert [span.indices for span in spans] == [(0,), (1,), (2,)]
    assert layout[2][1].shape == (6, 12) and layout[2][1].tile_count == 1
    assert all(region.x == layout[0][col].x for row in layout for col, region in enumerate(row))


def test_covering_regions_gather_every_tile_overlapping_them(scene):
    spans = [row_span(scene, 12, row, cover=True) for row in range(3)]
    assert [span.tiles for span in spans] == [((0, 0, 12), (11, 11, 12)),
                                              ((0, 12, 14), (11, 12, 24), (16, 16, 24)),
                                              ((11, 24, 25), (16, 24, 30))]
    assert [span.window for span in spans] == [(0, 400), (0, 480), (176, 480)]
    assert regions(scene, 12, cover=True)[1][2].tile_count == 6


def test_region_at_is_the_region_regions_lists(scene):
    for cover in (False, True):
        layout = regions(scene, 7, cover)
        assert region_counts(scene, 7) == (5, 5) and layout[4][1].shape == (2, 7)
        assert all(region_at(scene, 7, r, c, cover) == layout[r][c] for r in range(5) for c in range(5))


@pytest.mark.parametrize("chunk", [0, -3])
def test_chunks_that_are_not_a_positive_number_of_tokens_are_refused(scene, chunk):
    for call in (region_counts, regions):
        with pytest.raises(InputError, match=f"chunks must be a positive number of tokens, got {chunk}"):
            call(scene, chunk)


def test_the_default_chunk_is_a_multiple_of_the_stride(scene):
    assert default_chunk(scene) == 120 and default_chunk(scene, 30) == 24
    assert default_chunk(scene, 5) == 12  # never below one stride
    assert default_chunk(Tiling(PixelGrid(UTM18N, TRANSFORM, 480, 480), tile_size=96, overlap=64)) == 128  # stride 2
