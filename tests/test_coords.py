"""The coordinates modality: TerraMind's vocabulary file in, each tile's location as tokens."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer
from tokenizers import Tokenizer, models, pre_tokenizers

import xterramind
from xterramind.errors import CheckpointError, InputError, WeightsUnavailableError
from xterramind.grid import Tiling
from xterramind.modalities import grid_of, resolve
from xterramind.models.coords import coords_text
from xterramind.tiles import tile_centres

SPECIAL = ("[PAD]", "[UNK]", "[SOS]", "[EOS]", "[S_0]", "[S_1]", "[S_2]")


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    """A vocabulary file like the official config.json: one word per rounded latitude and longitude."""
    words = list(SPECIAL) + [f"lat={v:.2f}" for v in np.arange(-90, 90.25, 0.25)]
    words += [f"lon={v:.2f}" for v in np.arange(-180, 180.25, 0.25)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path_factory.mktemp("coords") / "config.json"
    tokenizer.save(str(path))
    return path, words


@pytest.fixture(scope="module")
def model(vocabulary):
    return xterramind.load_model("terramind_micro", weights="random", device="cpu", tokenizers={"coords": vocabulary[0]})


def test_locations_become_rounded_text_tokens(model, vocabulary):
    words = vocabulary[1]
    assert coords_text(-75.8, 37.6) == "lat=37.50 lon=-75.75 [EOS]"
    ids = model.tokenize_coords([[-75.8, 37.6], [10.12, -0.13]])
    assert ids.tolist() == [[words.index("lat=37.50"), words.index("lon=-75.75"), 3],
                            [words.index("lat=-0.25"), words.index("lon=10.00"), 3]]
    with pytest.raises(InputError, match="longitude, latitude"):
        model.tokenize_coords([[200.0, 10.0]])


def test_tile_centres_are_where_the_tiles_are():
    cube = xterramind.open_sample()
    tiling = Tiling(grid_of(resolve(cube)[0].data, "cube"))
    lonlat = tile_centres(tiling, [(0, 0), (16, 16)])
    # the first tile's centre is 112 px (1120 m) right of and below the cube's corner (442980, 4171980)
    expected = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(444100.0, 4170860.0)
    assert np.allclose(lonlat[0], expected, atol=1e-9) and np.allclose(lonlat[0], (-75.63, 37.68), atol=0.01)
    assert lonlat[1, 0] > lonlat[0, 0] and lonlat[1, 1] < lonlat[0, 1]  # east and south of the first


def test_embed_and_generate_can_condition_on_the_location(model):
    cube = xterramind.open_sample()
    located = cube.terramind.embed(model, coords=True)
    assert "coords" in located.attrs["modalities"]
    assert not np.allclose(located.values, cube.terramind.embed(model).values)
    lulc = cube.terramind.generate("LULC", model, seed=1, coords=True).compute()
    assert "coords" in lulc.attrs["modalities"] and set(np.unique(lulc.LULC.values)) <= set(range(10))


def test_coordinates_cannot_be_a_target(model):
    with pytest.raises(xterramind.XterramindError, match="input only"):
        xterramind.open_sample().terramind.generate("coords", model)


def test_without_the_vocabulary_the_error_names_the_file(tmp_path):
    code = ("import xterramind\n"
            "m = xterramind.load_model('terramind_micro', weights='random')\n"
            "xterramind.open_sample().terramind.embed(m, coords=True)\n")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HUB_OFFLINE="1", XTERRAMIND_WEIGHTS_DIR="")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert "WeightsUnavailableError" in done.stderr
    for needed in ("ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords", "config.json", "tokenizers={'coords'"):
        assert needed in done.stderr


def test_offline_with_random_weights_the_missing_vocabulary_is_told_at_once_with_the_fixes_that_apply(offline):
    model = xterramind.load_model("terramind_micro", weights="random", device="cpu", seed=11)
    with pytest.raises(WeightsUnavailableError) as error:
        xterramind.open_sample().terramind.embed(model, coords=True)
    assert 1 <= len(offline) <= 2, offline  # one probe of the hub, not huggingface_hub's six tries and 23 s
    message = str(error.value)
    assert "config.json" in message and "tokenizers={'coords'" in message and "leave out coords=True" in message
    assert "weights='random'" not in message  # the model has random weights already: the vocabulary is data


def test_a_vocabulary_file_that_is_missing_or_not_one_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "not a tokenizer"}')
    for path, kind in ((tmp_path / "config.json", CheckpointError),
                       (tmp_path / "nowhere.json", WeightsUnavailableError)):
        model = xterramind.load_model("terramind_micro", weights="random", device="cpu", tokenizers={"coords": path})
        with pytest.raises(kind, match="tokenizers=") as error:
            model.tokenize_coords([[10.0, 45.0]])
        assert str(path) in str(error.value)
