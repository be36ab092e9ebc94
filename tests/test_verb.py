"""``xterramind.verb``: the one region loop on stub verbs whose kernels record what reaches them, and the
``Prepared`` verb behind a lazy result (which ``to_zarr`` runs itself only while the result is untouched)."""

import pickle
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from affine import Affine

from xterramind import embed, generate
from xterramind.grid import PixelGrid, Tiling, regions
from xterramind.tiles import Tiles
from xterramind.verb import PIXELS, TOKENS, Verb, numpy_blocks, prepared_behind, run_region

# the bundled scene's lattice: 30 x 30 tokens, 14-token tiles at 0, 11 and 16 along each axis (stride 12)
SCENE = Tiling(PixelGrid("EPSG:32618", Affine(10, 0, 443_000, 0, -10, 4_172_000), 480, 480))
BATCH = 3
JOB = SimpleNamespace(tiles=Tiles(("X",), ((None,),), SCENE, BATCH, check_input=False))
MODEL = SimpleNamespace(device=torch.device("cpu"), normalize=lambda name, x, inplace=False: x)  # all run_region asks of a model


def _owner(axis, token: int) -> int:
    (owner,) = [i for i, (start, stop) in enumerate(axis.owned) if start <= token < stop]
    return owner


def _scene() -> np.ndarray:
    """``(1, 480, 480)`` pixels, NaN on all of the tiles at (0, 0) and (16, 16) and nowhere else."""
    pixels = np.arange(480 * 480, dtype=np.float32).reshape(1, 480, 480) / 1000
    pixels[:, :224, :224] = pixels[:, 256:, 256:] = np.nan
    return pixels


def _recording_verb(stitch: str):
    """A verb whose kernel records each batch (the tiles' origins): tokens give their tile's number, pixels
    their input as it came."""
    batches = []

    def kernel(job, model, inputs, batch):
        batches.append([ref.origin for ref in batch])
        if stitch == TOKENS:
            return {"owner": torch.stack([torch.full((14, 14), ref.index[0] * 3 + ref.index[1]) for ref in batch])}
        return {"image": inputs["X"]}

    if stitch == TOKENS:
        stitched, finish = (lambda job: {"blocks": {"owner": (torch.int32, (), -1)}}), numpy_blocks
    else:
        stitched, finish = (lambda job: {"channels": {"image": 1}}), (lambda job, model, result: {
            "image": result[0]["image"].numpy()})
    return Verb("stub", None, kernel, stitch, stitched, finish), batches


def _tiles_with_data(pixels: np.ndarray, region) -> list[tuple[int, int]]:
    """The region's tiles (origins) with a valid pixel, worked out from the pixels."""
    return [(oy, ox) for oy, _, _ in region.y.tiles for ox, _, _ in region.x.tiles
            if np.isfinite(pixels[0, oy * 16 : oy * 16 + 224, ox * 16 : ox * 16 + 224]).any()]


def _run(verb, batches, pixels, chunk):
    """Run every region; per region its result and the tiles its kernel saw, as batches."""
    done = []
    for row in regions(SCENE, chunk, cover=verb.cover):
        for region in row:
            (y0, y1), (x0, x1) = region.y.window, region.x.window
            batches.clear()
            blocks = run_region(pixels[:, y0:y1, x0:x1], region=region, verb=verb, job=JOB, model=MODEL)
            done.append((region, blocks, list(batches)))
    return done


@pytest.mark.parametrize("stitch", [TOKENS, PIXELS])
@pytest.mark.parametrize("chunk", [12, 7])
def test_every_tile_with_data_reaches_the_kernel_once_in_batches_of_at_most_batch_size(stitch, chunk):
    verb, batches = _recording_verb(stitch)
    pixels = _scene()
    seen = Counter()
    for region, _, given in _run(verb, batches, pixels, chunk):
        assert all(1 <= len(batch) <= BATCH for batch in given)
        assert all(len(batch) == BATCH for batch in given[:-1])  # only the last batch of a region is short
        tiles = [origin for batch in given for origin in batch]
        assert tiles == _tiles_with_data(pixels, region)  # each once; none without data
        seen.update(tiles)
    assert (0, 0) not in seen and (16, 16) not in seen and len(seen) == 7
    if stitch == TOKENS and chunk == 12:  # regions of a multiple of the stride share no tile: each ran once
        assert set(seen.values()) == {1}
    else:
        assert max(seen.values()) > 1  # shared tiles run once per region that needs them


def test_a_token_verbs_blocks_hold_each_tokens_owner_and_nodata_where_no_pixel_was_valid():
    verb, batches = _recording_verb(TOKENS)
    pixels = _scene()
    owner = np.full((30, 30), -2)
    for region, blocks, given in _run(verb, batches, pixels, 12):
        (y0, y1), (x0, x1) = region.y.tokens, region.x.tokens
        owner[y0:y1, x0:x1] = blocks["owner"]
        if region.y.tokens == region.x.tokens == (0, 12):  # its window is the tile at (0, 0): no valid pixel
            assert given == [] and (blocks["owner"] == -1).all()
    expected = np.array([[_owner(SCENE.rows, y) * 3 + _owner(SCENE.cols, x) for x in range(30)] for y in range(30)])
    expected[:14, :14] = expected[16:, 16:] = -1
    np.testing.assert_array_equal(owner, expected)


def test_a_pixel_verb_whose_tiles_agree_gives_back_its_input_whatever_the_chunking():
    verb, batches = _recording_verb(PIXELS)
    pixels = _scene()
    for chunk in (12, 7):
        image = np.full((1, 480, 480), -1.0, dtype=np.float32)
        for region, blocks, _ in _run(verb, batches, pixels, chunk):
            (y0, y1), (x0, x1) = (np.array(span.tokens) * 16 for span in (region.y, region.x))
            image[:, y0:y1, x0:x1] = blocks["image"]
        np.testing.assert_allclose(image, pixels, rtol=1e-5, atol=1e-4)  # NaN where the input was


# -- the Prepared verb behind a lazy result ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(cube):
    return cube.isel(y=slice(0, 384), x=slice(0, 384))  # 24 x 24 tokens: 2 x 2 regions of 12


def test_a_prepared_verb_gives_its_lazy_result_its_template_and_its_region_task(small, micro):
    prepared = embed.prepare(small, micro, chunks=12)
    lazy, placeholder = prepared.lazy(), prepared.placeholder()
    assert prepared_behind(lazy) is prepared and prepared_behind(placeholder) is None
    assert (lazy.dims, lazy.shape, lazy.chunks, lazy.attrs) == (placeholder.dims, placeholder.shape,
                                                                placeholder.chunks, placeholder.attrs)
    assert lazy.chunks == ((64,), (12, 12), (12, 12)) and not prepared.cover and prepared.scale == 1
    assert prepared.region(1, 0) == regions(prepared.layout.tiling, 12)[1][0]
    assert (prepared.region(1, 0).y.tokens, prepared.region(1, 0).x.tokens) == ((12, 24), (0, 12))
    assert pickle.loads(pickle.dumps(prepared.task)).keywords["verb"].name == "embed"  # travels to workers
    pixels = generate.prepare(small, micro, targets="LULC", chunks=12)
    assert pixels.cover and pixels.scale == 16 and pixels.verb.stitch == PIXELS
    assert set(pixels.placeholder().data_vars) == set(pixels.lazy().data_vars) == {"LULC", "LULC_probability"}
    assert pixels.placeholder().LULC.chunks == pixels.lazy().LULC.chunks == ((192, 192), (192, 192))


def test_prepared_behind_finds_the_verb_of_an_untouched_result_only(small, micro):
    lazy = embed.prepare(small, micro, chunks=12).lazy()
    prepared = prepared_behind(lazy)
    assert prepared is not None and prepared.verb.name == "embed"
    assert prepared_behind(lazy.assign_attrs(note="x")) is prepared  # the same data: still the verb's own
    for changed in (lazy.isel(x=slice(0, 12)), lazy.rename("other"), lazy + 0, lazy * 2, lazy.where(lazy > 0),
                    lazy.chunk({"y": 6})):
        assert prepared_behind(changed) is None  # to_zarr writes these block by block
    lulc = generate.prepare(small, micro, targets="LULC", chunks=12).lazy()
    assert prepared_behind(lulc) is not None and prepared_behind(lulc[["LULC"]]) is prepared_behind(lulc)
    assert prepared_behind(lulc.assign(extra=lulc.LULC + 1)) is None
    assert prepared_behind(lulc.drop_vars("LULC").isel(x=slice(0, 10))) is None


def test_a_variable_renamed_to_another_outputs_name_is_not_that_output(small, micro):
    """The data under a name must be the output of that name: else the region stages would write the
    verb's output of that name, not what the result holds."""
    lulc = generate.prepare(small, micro, targets="LULC", chunks=12).lazy()
    assert prepared_behind(lulc.drop_vars("LULC").rename({"LULC_probability": "LULC"})) is None
    images = generate.prepare(small, micro, targets=["S1GRD", "S1RTC"], chunks=12).lazy()
    assert prepared_behind(images.rename({"S1GRD": "S1RTC", "S1RTC": "S1GRD"})) is None


def test_a_lazy_result_copies_cheaply_and_pickles_without_its_prepared_verb(small, micro):
    """The prepared verb rides in the variables' encoding: copies (deep ones too) share it rather than copy the
    cube behind it, and a pickled result (sent to another process) comes back as any lazy result, written
    block by block, with the same values."""
    import copy

    lazy = small.terramind.embed(micro, chunks=12)
    prepared = prepared_behind(lazy)
    assert prepared_behind(lazy.copy(deep=True)) is prepared and prepared_behind(copy.deepcopy(lazy)) is prepared
    assert copy.deepcopy(lazy).encoding["xterramind_prepared"] is lazy.encoding["xterramind_prepared"]
    unpickled = pickle.loads(pickle.dumps(lazy))
    assert prepared_behind(unpickled) is None
    np.testing.assert_array_equal(unpickled.values, lazy.values)
