"""Quicklook PNGs: a picture made with random weights says so on it, in a banner above the panels; one made
with trained weights (or from data alone) has none. Read back as pixels."""

import numpy as np
from PIL import Image

from xterramind import cli
from xterramind.facts import LULC_CLASSES, LULC_COLOURS
from xterramind.quicklook import BANNER_COLOUR as RED
from xterramind.quicklook import lulc_rgb, random_weights_note, save_side_by_side


def _panels():
    generator = np.random.default_rng(0)
    return generator.integers(0, 256, (40, 60, 3), dtype=np.uint8), generator.integers(0, 256, (40, 40, 3), dtype=np.uint8)


def _banner(picture: np.ndarray, height: int) -> np.ndarray:
    return picture[: picture.shape[0] - height]


def test_a_note_is_written_in_a_banner_above_unchanged_panels(tmp_path):
    plain = np.asarray(Image.open(save_side_by_side(tmp_path / "plain.png", *_panels(), height=240)))
    assert plain.shape == (240, 360 + 240 + 8, 3)  # no note: the panels alone
    notes = {}
    for note in ("made with random weights (seed 0), not TerraMind's trained model", "another note"):
        picture = np.asarray(Image.open(save_side_by_side(tmp_path / "noted.png", *_panels(), height=240, note=note)))
        np.testing.assert_array_equal(picture[-240:], plain)  # the panels as they were, under the banner
        banner = _banner(picture, 240)
        text = (banner != RED).any(axis=-1)
        assert len(banner) >= 16 and (banner[~text] == RED).all() and 50 < text.sum() < text.size / 3
        columns = np.flatnonzero(text.any(axis=0))
        assert columns[0] > 0 and columns[-1] < banner.shape[1] - 1  # the whole note fits, centred
        notes[note] = text
    first, second = notes.values()
    assert first.shape != second.shape or (first != second).any()  # the banner shows the note, not a stripe
    small = np.asarray(Image.open(save_side_by_side(tmp_path / "small.png", *_panels(), height=40, note=note * 3)))
    columns = np.flatnonzero((_banner(small, 40) != RED).any(axis=-1).any(axis=0))
    assert len(columns) and columns[0] > 0 and columns[-1] < small.shape[1] - 1  # a long note shrinks to fit


def test_land_cover_is_painted_in_the_colour_of_each_class():
    classes = np.arange(len(LULC_CLASSES)).reshape(2, 5)
    rgb = lulc_rgb(classes)
    assert rgb.shape == (2, 5, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb.reshape(-1, 3), LULC_COLOURS)
    np.testing.assert_array_equal(lulc_rgb(np.array([[-1, 12]])), LULC_COLOURS[[0, 9]][None])  # out of range: clipped


def test_the_note_comes_from_the_attrs_of_random_weights_only(cube, lulc):
    assert random_weights_note(lulc.attrs) == lulc.attrs["warning"] and "random weights" in lulc.attrs["warning"]
    checksum = "0" * 64
    assert random_weights_note({"weights": checksum, "tokenizers": {"LULC": checksum}}) is None
    assert random_weights_note(cube.attrs) is None and random_weights_note({}) is None
    for attrs in ({"weights": "random"}, {"weights": checksum, "tokenizer_weights": "random"},
                  {"weights": checksum, "tokenizers": {"LULC": checksum, "DEM": "random"}}):
        assert "random weights" in random_weights_note(attrs), attrs


def test_the_demo_quicklook_on_random_weights_says_so(tmp_path):
    assert cli.main(["demo", "--model", "terramind_micro", "--output", str(tmp_path), "--zarr-format", "2"]) == 0
    picture = np.asarray(Image.open(tmp_path / "quicklook.png").convert("RGB"))
    banner = _banner(picture, 480)
    assert picture.shape[1] == 3 * 480 + 2 * 8 and len(banner) >= 16
    assert (banner == RED).all(axis=-1).mean() > 0.5 and (banner != RED).any(axis=-1).sum() > 100
