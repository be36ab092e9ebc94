"""Properties of the tile lattice and of stitching that hold for every grid, tile size, overlap and chunking
(hypothesis, in the manner of flox's tests/test_properties.py): each checked against a token-by-token count."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from tests.strategies import PATCH, axis_tilings, chunks, tilings
from xterramind.grid import AxisSpan, AxisTiling, Tiling, region_at, region_counts, regions
from xterramind.tiles import Tiles, crop_to_region, empty_tokens, tiles_with_data
from xterramind.verb import PIXELS, TOKENS, Verb, numpy_blocks, run_region

# deterministic (the same examples on every run and machine), nothing written to disk, no timing
settings.register_profile("xterramind", derandomize=True, database=None, deadline=None, max_examples=60)
settings.load_profile("xterramind")


def _margin(axis: AxisTiling) -> int:
    """Tokens of context a tile gives its owned tokens on each side (half the overlap)."""
    return (axis.tile - axis.stride) // 2


def _covering(axis: AxisTiling, token: int) -> list[int]:
    return [i for i, origin in enumerate(axis.origins) if origin <= token < origin + axis.tile]


def _owner(axis: AxisTiling, token: int) -> int:
    (owner,) = [i for i, (start, stop) in enumerate(axis.owned) if start <= token < stop]
    return owner


@st.composite
def tilings_and_chunks(draw):
    tiling = draw(tilings())
    return tiling, draw(chunks(tiling.rows.stride, max(tiling.tokens.shape)))


# -- 1. ownership ---------------------------------------------------------------------------------------


@given(axis=axis_tilings())
def test_every_token_of_an_axis_has_one_owner_tile_that_gives_it_full_context(axis):
    owners = np.zeros(axis.length, int)
    for start, stop in axis.owned:
        owners[start:stop] += 1
    assert (owners == 1).all(), owners
    margin = _margin(axis)
    for token in range(axis.length):
        (owner,) = axis.tiles_owning(token, token + 1)
        origin = axis.origins[owner]
        assert origin <= token < origin + axis.tile
        # central in its tile: ``margin`` tokens of real context on each side, or all the grid has there
        assert token - origin >= min(margin, token)
        assert origin + axis.tile - 1 - token >= min(margin, axis.length - 1 - token)


@given(axis=axis_tilings())
def test_tiles_lie_on_the_lattice_inside_the_axis_and_edge_tiles_only_shift_inward(axis):
    origins, margin = axis.origins, _margin(axis)
    assert np.issubdtype(origins.dtype, np.integer) and (np.diff(origins) > 0).all()
    assert origins[0] >= 0 and origins[-1] + axis.tile <= axis.length
    assert (axis.owned[:, 0] % axis.stride == 0).all()  # owned ranges start on the lattice
    for origin, (start, _) in zip(origins, axis.owned, strict=True):
        lattice = start - margin
        assert origin == lattice or (origin == 0 < -lattice) or (origin == axis.length - axis.tile < lattice)


@given(axis=axis_tilings(), extra=st.integers(1, 40))
def test_a_longer_axis_keeps_every_tile_but_the_far_edge_one(axis, extra):
    """The lattice is anchored at the grid's origin: a grid that grows moves only its far edge tile."""
    longer = AxisTiling(axis.length + extra, axis.tile, axis.stride)
    kept = len(axis.origins) - 1
    np.testing.assert_array_equal(longer.origins[:kept], axis.origins[:kept])
    np.testing.assert_array_equal(longer.owned[:kept], axis.owned[:kept])


@given(axis=axis_tilings(), data=st.data())
def test_tiles_owning_and_covering_a_range_are_those_of_its_tokens(axis, data):
    start = data.draw(st.integers(0, axis.length - 1), label="start")
    stop = data.draw(st.integers(start + 1, axis.length), label="stop")
    tokens = range(start, stop)
    assert axis.tiles_owning(start, stop).tolist() == sorted({_owner(axis, t) for t in tokens})
    assert axis.tiles_covering(start, stop).tolist() == sorted({i for t in tokens for i in _covering(axis, t)})


@given(tiling=tilings())
def test_every_token_of_a_grid_has_one_owner_tile_inside_the_grid(tiling):
    grid, tokens = tiling.grid, tiling.tokens
    assert tokens.shape == (grid.height // PATCH, grid.width // PATCH) and tokens.crs == grid.crs
    assert (tiling.rows.length, tiling.cols.length) == tokens.shape
    rows, cols = tiling.rows, tiling.cols
    assert tiling.tile_count == len(rows.origins) * len(cols.origins)
    owners = np.zeros(tokens.shape, int)
    for origin_y, (y0, y1) in zip(rows.origins, rows.owned, strict=True):
        for origin_x, (x0, x1) in zip(cols.origins, cols.owned, strict=True):
            owners[y0:y1, x0:x1] += 1
            top, left = origin_y * PATCH, origin_x * PATCH  # pixels: on the 16-px lattice from the grid's origin
            assert top >= 0 and top + tiling.tile_size <= grid.height
            assert left >= 0 and left + tiling.tile_size <= grid.width
            assert top <= y0 * PATCH and y1 * PATCH <= top + tiling.tile_size
            assert left <= x0 * PATCH and x1 * PATCH <= left + tiling.tile_size
    assert (owners == 1).all()


@given(tiling=tilings())
def test_the_token_grid_is_the_pixel_grid_in_16_px_blocks_from_the_same_corner(tiling):
    grid, tokens = tiling.grid, tiling.tokens
    assert tokens.same_as(grid.coarsened(PATCH))
    assert (tokens.transform.c, tokens.transform.f) == (grid.transform.c, grid.transform.f)
    assert (tokens.transform.a, tokens.transform.e) == (grid.transform.a * PATCH, grid.transform.e * PATCH)
    blocks_x = grid.x_coords()[: tokens.width * PATCH].reshape(tokens.width, PATCH).mean(axis=1)
    blocks_y = grid.y_coords()[: tokens.height * PATCH].reshape(tokens.height, PATCH).mean(axis=1)
    np.testing.assert_allclose(tokens.x_coords(), blocks_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(tokens.y_coords(), blocks_y, rtol=0, atol=1e-6)


# -- 2. regions -----------------------------------------------------------------------------------------


def _check_span(span: AxisSpan, axis: AxisTiling, chunk: int, cover: bool) -> None:
    """The span's tiles are those of its tokens (owning them, or with ``cover`` overlapping them), inside its
    window, and its window is inside the grid."""
    start, stop = span.tokens
    assert 0 <= start < stop <= axis.length and stop - start <= chunk
    tokens = range(start, stop)
    if cover:
        expected = sorted({i for t in tokens for i in _covering(axis, t)})
    else:
        expected = sorted({_owner(axis, t) for t in tokens})
    assert list(span.indices) == expected
    assert [origin for origin, _, _ in span.tiles] == axis.origins[expected].tolist()
    low, high = span.window
    assert 0 <= low < high <= axis.length * PATCH  # the halo stays on the grid
    for origin, first, last in span.tiles:
        assert low <= origin * PATCH and (origin + axis.tile) * PATCH <= high
        assert start <= first < last <= stop and origin <= first and last <= origin + axis.tile
    assert low == span.tiles[0][0] * PATCH and high == (span.tiles[-1][0] + axis.tile) * PATCH  # no wider
    given_tokens = np.zeros(stop - start, int)
    for index, (_, first, last) in zip(span.indices, span.tiles, strict=True):
        given_tokens[first - start : last - start] += 1
        if not cover:  # a tile gives exactly the tokens of the span it owns
            owned = axis.owned[index]
            assert (first, last) == (max(owned[0], start), min(owned[1], stop))
    assert (given_tokens == 1).all() if not cover else (given_tokens >= 1).all()


@given(case=tilings_and_chunks(), cover=st.booleans())
def test_regions_partition_the_token_grid_and_gather_their_tiles_inside_their_windows(case, cover):
    tiling, chunk = case
    layout = regions(tiling, chunk, cover=cover)
    assert (len(layout), len(layout[0])) == region_counts(tiling, chunk)
    covered = np.zeros(tiling.tokens.shape, int)
    for r, row in enumerate(layout):
        for c, region in enumerate(row):
            assert region == region_at(tiling, chunk, r, c, cover)
            (y0, y1), (x0, x1) = region.y.tokens, region.x.tokens
            assert region.shape == (y1 - y0, x1 - x0) and region.tile_count == len(region.y.tiles) * len(region.x.tiles)
            covered[y0:y1, x0:x1] += 1
            _check_span(region.y, tiling.rows, chunk, cover)
            _check_span(region.x, tiling.cols, chunk, cover)
    assert (covered == 1).all()


@given(tiling=tilings(), multiple=st.integers(1, 4))
def test_owning_regions_a_multiple_of_the_stride_wide_run_each_tile_of_one_lattice_range_once(tiling, multiple):
    """What ``default_chunk`` relies on: a lattice range never straddles such regions, so a tile owning one range is
    run by one region. Edge tiles merged into one origin own several ranges and may be run by several."""
    chunk = multiple * tiling.rows.stride
    uses = np.zeros((len(tiling.rows.origins), len(tiling.cols.origins)), int)
    for row in regions(tiling, chunk):
        for region in row:
            uses[np.ix_(region.y.indices, region.x.indices)] += 1

    def regions_meeting(axis: AxisTiling) -> np.ndarray:  # per tile: regions along the axis meeting its owned range
        return np.array([(stop - 1) // chunk - start // chunk + 1 for start, stop in axis.owned])

    np.testing.assert_array_equal(uses, np.outer(regions_meeting(tiling.rows), regions_meeting(tiling.cols)))
    one_range = np.outer(*(axis.owned[:, 1] - axis.owned[:, 0] <= axis.stride for axis in (tiling.rows, tiling.cols)))
    assert (uses[one_range] == 1).all(), uses


def _tiles(tiling: Tiling) -> Tiles:
    return Tiles(("S2L2A",), ((None,),), tiling, None)


@st.composite
def regions_and_valid_pixels(draw):
    """A region of a tiling, owning or covering, and a validity mask over its window: all valid, or a few valid
    pixels only."""
    tiling, chunk = draw(tilings_and_chunks())
    rows, cols = region_counts(tiling, chunk)
    cover = draw(st.booleans())
    region = region_at(tiling, chunk, draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1)), cover)
    shape = (region.y.window[1] - region.y.window[0], region.x.window[1] - region.x.window[0])
    if draw(st.booleans()):
        return tiling, region, cover, np.ones(shape, bool)
    valid = np.zeros(shape, bool)
    for y, x in draw(st.lists(st.tuples(st.integers(0, shape[0] - 1), st.integers(0, shape[1] - 1)), max_size=4)):
        valid[y, x] = True
    return tiling, region, cover, valid


@given(case=regions_and_valid_pixels())
def test_a_regions_tiles_with_data_are_cut_from_its_window_and_fill_its_block(case):
    tiling, region, cover, valid = case
    refs = tiles_with_data(region, valid, _tiles(tiling))
    tile, first_y, first_x = tiling.rows.tile, region.y.window[0] // PATCH, region.x.window[0] // PATCH
    expected = [(oy, ox) for oy, _, _ in region.y.tiles for ox, _, _ in region.x.tiles
                if valid[(oy - first_y) * PATCH : (oy - first_y + tile) * PATCH,
                         (ox - first_x) * PATCH : (ox - first_x + tile) * PATCH].any()]
    assert [ref.origin for ref in refs] == expected  # exactly the tiles with a valid pixel
    starts = (region.y.tokens[0], region.x.tokens[0])
    given_tokens = np.zeros(region.shape, int)
    for ref in refs:
        assert ref.window_origin == (ref.origin[0] - first_y, ref.origin[1] - first_x)
        for corner, side in zip(ref.window_origin, valid.shape, strict=True):
            assert corner >= 0 and (corner + tile) * PATCH <= side  # the tile is cut from the window
        assert (tiling.rows.origins[ref.index[0]], tiling.cols.origins[ref.index[1]]) == ref.origin
        for part, place, origin, start in zip(ref.part, ref.place, ref.origin, starts, strict=True):
            assert 0 <= part.start < part.stop <= tile  # tokens of the tile, put at the same global place
            assert (part.start + origin, part.stop + origin) == (place.start + start, place.stop + start)
        given_tokens[ref.place] += 1
    if valid.all():  # every token from one owner tile; with ``cover``, from every tile overlapping it
        assert (given_tokens >= 1).all() if cover else (given_tokens == 1).all()


@given(case=regions_and_valid_pixels())
def test_a_region_is_cropped_from_its_window_and_its_empty_tokens_are_those_without_a_valid_pixel(case):
    _, region, _, valid = case
    (wy0, wy1), (wx0, wx1) = region.y.window, region.x.window
    (y0, y1), (x0, x1) = region.y.tokens, region.x.tokens

    def global_indices(ys, xs):
        return np.stack(np.meshgrid(ys, xs, indexing="ij"))

    window_pixels = global_indices(np.arange(wy0, wy1), np.arange(wx0, wx1))
    np.testing.assert_array_equal(crop_to_region(window_pixels, region, PATCH),
                                  global_indices(np.arange(y0 * PATCH, y1 * PATCH), np.arange(x0 * PATCH, x1 * PATCH)))
    window_tokens = global_indices(np.arange(wy0, wy1, PATCH) // PATCH, np.arange(wx0, wx1, PATCH) // PATCH)
    np.testing.assert_array_equal(crop_to_region(window_tokens, region, PATCH, cell=PATCH),
                                  global_indices(np.arange(y0, y1), np.arange(x0, x1)))
    expected = np.ones(region.shape, bool)
    for y, x in zip(*np.nonzero(valid), strict=True):
        ty, tx = (y + wy0) // PATCH - y0, (x + wx0) // PATCH - x0
        if 0 <= ty < region.shape[0] and 0 <= tx < region.shape[1]:
            expected[ty, tx] = False
    np.testing.assert_array_equal(empty_tokens(valid, region, PATCH), expected)


# -- 3. blend and crop weights --------------------------------------------------------------------------


def _per_pixel(axis: AxisTiling, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the tiles' weights and how many tiles cover each pixel of the axis."""
    size = axis.tile * PATCH
    total, count = np.zeros(axis.length * PATCH), np.zeros(axis.length * PATCH, int)
    for origin, weight in zip(axis.origins, weights, strict=True):
        total[origin * PATCH : origin * PATCH + size] += weight
        count[origin * PATCH : origin * PATCH + size] += 1
    return total, count


@given(axis=axis_tilings())
def test_blend_weights_are_positive_and_two_overlapping_tiles_add_up_to_one(axis):
    weights = axis.blend_weights(PATCH)
    assert weights.shape == (len(axis.origins), axis.tile * PATCH) and (weights > 0).all()
    total, count = _per_pixel(axis, weights)
    assert (count >= 1).all()  # every pixel of the token grid is covered ...
    np.testing.assert_allclose(total[count <= 2], 1.0, rtol=0, atol=1e-12)  # ... and where two tiles meet, blended


@given(axis=axis_tilings())
def test_blend_weights_sum_to_one_wherever_a_tile_covers(axis):
    total, count = _per_pixel(axis, axis.blend_weights(PATCH))
    note(f"origins {axis.origins.tolist()}, covered {count.max()} times at most, sums up to {total.max()}")
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-9)


@given(axis=axis_tilings(), extra=st.integers(1, 40))
def test_blend_weights_depend_only_on_the_lattice_not_on_the_grids_extent(axis, extra):
    longer = AxisTiling(axis.length + extra, axis.tile, axis.stride)

    def same_neighbourhood(i: int) -> bool:  # tile i and every tile overlapping it sit at the same place in both
        around = [j for t in (axis, longer) for j in range(len(t.origins)) if abs(t.origins[j] - t.origins[i]) < t.tile]
        return all(j < len(axis.origins) and j < len(longer.origins) and axis.origins[j] == longer.origins[j]
                   for j in around)

    kept = [i for i in range(len(axis.origins)) if same_neighbourhood(i)]
    note(f"compared tiles {kept} of {len(axis.origins)}")
    np.testing.assert_allclose(longer.blend_weights(PATCH)[kept], axis.blend_weights(PATCH)[kept], rtol=0, atol=1e-12)


@given(axis=axis_tilings())
def test_crop_weights_pick_the_owner_tile_of_every_pixel(axis):
    weights = axis.crop_weights(PATCH)
    assert set(np.unique(weights)) <= {0.0, 1.0}
    total, _ = _per_pixel(axis, weights)
    np.testing.assert_array_equal(total, 1.0)
    for i, (origin, (start, stop)) in enumerate(zip(axis.origins, axis.owned, strict=True)):
        picked = np.flatnonzero(weights[i]) // PATCH + origin  # the tokens whose pixels tile i gives
        np.testing.assert_array_equal(np.unique(picked), np.arange(start, stop))
        assert all(_owner(axis, t) == i for t in np.unique(picked))


@given(case=tilings_and_chunks(), blend=st.booleans())
@settings(max_examples=30)
def test_the_weights_a_region_gathers_are_the_lattices_whichever_region_asks(case, blend):
    """Summed over a covering region's tiles as generate's blend does (each tile's weights at the pixels it
    gives), the weights are the whole lattice's at those pixels: every region sees every tile with the same
    weights, so blended pixels do not depend on the chunking."""
    tiling, chunk = case
    rows, cols = tiling.rows, tiling.cols
    pick = (lambda axis: axis.blend_weights(PATCH)) if blend else (lambda axis: axis.crop_weights(PATCH))
    weight_y, weight_x = pick(rows), pick(cols)
    total_y, total_x = _per_pixel(rows, weight_y)[0], _per_pixel(cols, weight_x)[0]
    for row in regions(tiling, chunk, cover=True):
        for region in row:
            shape = (region.shape[0] * PATCH, region.shape[1] * PATCH)
            window = (region.y.window[1] - region.y.window[0], region.x.window[1] - region.x.window[0])
            summed = np.zeros(shape)
            for ref in tiles_with_data(region, np.ones(window, bool), _tiles(tiling)):
                (sy, sx), place = ref.pixels(ref.part, PATCH), ref.pixels(ref.place, PATCH)
                summed[place] += np.outer(weight_y[ref.index[0], sy], weight_x[ref.index[1], sx])
            (y0, y1), (x0, x1) = (np.array(span.tokens) * PATCH for span in (region.y, region.x))
            np.testing.assert_allclose(summed, np.outer(total_y[y0:y1], total_x[x0:x1]), rtol=0, atol=1e-12)
            if not blend:
                np.testing.assert_array_equal(summed, 1.0)  # one tile per pixel


# -- 4. chunking never changes values ---------------------------------------------------------------------

STUB_MODEL = SimpleNamespace(device=torch.device("cpu"), normalize=lambda name, x, inplace=False: x)  # what run_region asks of one


def _tile_code(ref) -> float:
    return float(ref.origin[0] * 1000 + ref.origin[1])


def _stub_kernel(job, model, inputs, batch):
    """Outputs that say which tile gave them: tokens, the tile's code plus each token's place in the tile (so a token
    from another tile, or from another place, shows); pixels, the input plus the tile's code (so blending shows)."""
    side = job.tiles.tile_tokens
    codes = torch.tensor([_tile_code(ref) for ref in batch], dtype=torch.float64)
    if job.pixels:
        return {"value": inputs["X"].double() + codes[:, None, None, None]}
    places = torch.arange(side * side, dtype=torch.float64).reshape(side, side) / 1e4
    return {"value": codes[:, None, None] + places}


STUB_VERBS = {
    False: Verb("tokens", None, _stub_kernel, TOKENS, lambda job: {"blocks": {"value": (torch.float64, (), np.nan)}},
                numpy_blocks),
    True: Verb("pixels", None, _stub_kernel, PIXELS, lambda job: {"channels": {"value": 1}},
               lambda job, model, result: {"value": result[0]["value"].numpy()}),
}


def _stub_map(tiling: Tiling, pixels: np.ndarray, chunk: int, blend: bool, batch: int) -> np.ndarray:
    """The whole grid's output of a stub verb run region by region, as the lazy graph would."""
    verb = STUB_VERBS[blend]
    job = SimpleNamespace(tiles=Tiles(("X",), ((None,),), tiling, batch, check_input=False), pixels=blend)
    scale = PATCH if blend else 1
    out = np.full((tiling.tokens.height * scale, tiling.tokens.width * scale), -1.0)
    for row in regions(tiling, chunk, cover=verb.cover):
        for region in row:
            (wy0, wy1), (wx0, wx1) = region.y.window, region.x.window
            block = run_region(pixels[:, wy0:wy1, wx0:wx1], region=region, verb=verb, job=job, model=STUB_MODEL)
            (y0, y1), (x0, x1) = (np.array(span.tokens) * scale for span in (region.y, region.x))
            out[y0:y1, x0:x1] = block["value"].squeeze(0) if blend else block["value"]
    return out


@st.composite
def stub_cases(draw):
    """A small tiling, two region sizes, a batch size, and pixels with a rectangle of nodata."""
    tiling = draw(tilings(max_extra=12))
    side = max(tiling.tokens.shape)
    first, second = draw(chunks(tiling.rows.stride, side)), draw(chunks(tiling.rows.stride, side))
    height, width = tiling.grid.shape
    pixels = np.random.default_rng(draw(st.integers(0, 2**16))).random((1, height, width)).astype(np.float32)
    y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
    pixels[:, y0 : draw(st.integers(y0, height)), x0 : draw(st.integers(x0, width))] = np.nan
    return tiling, pixels, first, second, draw(st.integers(1, 5))


@given(case=stub_cases())
@settings(max_examples=25)
def test_every_token_comes_from_its_owner_tile_whatever_the_region_size(case):
    tiling, pixels, first, second, batch = case
    tokens = _stub_map(tiling, pixels, first, False, batch)
    np.testing.assert_array_equal(_stub_map(tiling, pixels, second, False, batch + 1), tokens)
    rows, cols = tiling.rows, tiling.cols
    height, width = tiling.tokens.shape
    valid = np.isfinite(pixels[0, : height * PATCH, : width * PATCH]).reshape(height, PATCH, width, PATCH).any(axis=(1, 3))
    for y, x in np.ndindex(height, width):
        (iy,), (ix,) = rows.tiles_owning(y, y + 1), cols.tiles_owning(x, x + 1)
        oy, ox = rows.origins[iy], cols.origins[ix]
        expected = oy * 1000 + ox + ((y - oy) * rows.tile + (x - ox)) / 1e4 if valid[y, x] else np.nan
        np.testing.assert_equal(tokens[y, x], expected, err_msg=f"token {(y, x)}")


@given(case=stub_cases())
@settings(max_examples=10)
def test_blended_pixels_do_not_depend_on_the_region_size(case):
    tiling, pixels, first, second, batch = case
    blended = _stub_map(tiling, pixels, first, True, batch)
    np.testing.assert_allclose(_stub_map(tiling, pixels, second, True, batch + 1), blended, rtol=0, atol=1e-9)
    height, width = blended.shape
    assert (np.isnan(blended) == np.isnan(pixels[0, :height, :width])).all()  # NaN exactly where the input was


# -- 5. chunking never changes values (the real engine and the micro model) ------------------------------


@pytest.fixture(scope="module")
def crop(cube):
    """26 x 20 tokens of the real scene: along y the edge tile at 12 overlaps the tiles at 0 and 11."""
    return cube.isel(y=slice(0, 416), x=slice(0, 320))


@pytest.fixture(scope="module")
def reference(crop, micro):
    """Everything in one region (the default chunk, 120 tokens) from one input chunk; generated pixels on one
    column of tiles (14 tokens wide), generation being the slowest."""
    return {"tokens": crop.terramind.tokenize("S2L2A", micro).values,
            "embeddings": crop.terramind.embed(micro).values,
            "LULC_probability": crop.isel(x=slice(0, 224)).terramind.generate("LULC", micro, seed=3).LULC_probability.values}


input_chunks = st.fixed_dictionaries({"y": st.integers(40, 416), "x": st.integers(40, 320)})


@given(chunk=st.integers(5, 27), inputs=input_chunks)
@settings(max_examples=5)
def test_tokens_and_embeddings_do_not_depend_on_the_chunking(crop, micro, reference, chunk, inputs):
    cube = crop.chunk(inputs)
    tokens = cube.terramind.tokenize("S2L2A", micro, chunks=chunk)
    assert tokens.data.chunks[0][0] == min(chunk, 26)  # the chunking asked for is the one computed
    np.testing.assert_array_equal(tokens.values, reference["tokens"])
    embeddings = cube.terramind.embed(micro, chunks=chunk).values
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(embeddings, reference["embeddings"], rtol=0, atol=1e-5)


@given(chunk=st.integers(5, 27), inputs=input_chunks)
@settings(max_examples=3)
def test_blended_pixels_do_not_depend_on_the_chunking(crop, micro, reference, chunk, inputs):
    cube = crop.isel(x=slice(0, 224)).chunk(inputs)
    probability = cube.terramind.generate("LULC", micro, seed=3, chunks=chunk).LULC_probability
    assert probability.data.chunks[-2][0] == min(chunk, 26) * PATCH
    np.testing.assert_allclose(probability.values, reference["LULC_probability"], rtol=0, atol=1e-5)
