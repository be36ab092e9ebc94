"""Keyword arguments to the accessor verbs: a misspelt name or a value of the wrong kind is an InputError that
names the keyword, what it got and what it takes, before anything is computed (never a raw TypeError from
deep inside, never a silent truncation)."""

import numpy as np
import pytest

from xterramind.errors import InputError


def _call(verb, cube, model, **options):
    accessor = cube.terramind
    if verb == "embed":
        return accessor.embed(model, **options)
    if verb == "generate":
        return accessor.generate("LULC", model, **options)
    if verb == "tokenize":
        return accessor.tokenize("S2L2A", model, **options)
    if verb == "detokenize":
        return accessor.tokenize("S2L2A", model).terramind.detokenize("LULC", model, **options)
    return accessor.plot(**options)


@pytest.mark.parametrize(("verb", "wrong", "meant"), [
    ("embed", "tilesize", "tile_size"), ("embed", "batchsize", "batch_size"), ("embed", "Layer", "layer"),
    ("generate", "time_steps", "timesteps"), ("generate", "topk", "top_k"), ("generate", "chunk", "chunks"),
    ("tokenize", "tile-size", "tile_size"), ("detokenize", "timestep", "timesteps"), ("plot", "maxsize", "max_size"),
])
def test_a_misspelt_keyword_names_the_verb_and_the_nearest_option(cube, micro, verb, wrong, meant):
    with pytest.raises(InputError) as caught:
        _call(verb, cube, micro, **{wrong: 64})
    message = str(caught.value)
    assert message.startswith(f"{verb} got an unknown option {wrong!r} (did you mean {meant!r}?); its options are [")
    assert "_verb" not in message and f"'{meant}'" in message.split("its options are")[1]


def test_several_unknown_keywords_are_all_named_and_a_far_one_gets_no_guess(cube, micro):
    with pytest.raises(InputError) as caught:
        cube.terramind.embed(micro, tilesize=64, zzz=1)
    message = str(caught.value)
    assert message.startswith("embed got unknown options 'tilesize' (did you mean 'tile_size'?), 'zzz'; its options")


@pytest.mark.parametrize(("verb", "keyword", "value"), [
    ("embed", "tile_size", "224"), ("embed", "tile_size", 64.0), ("embed", "overlap", 32.0), ("embed", "overlap", "32"),
    ("embed", "chunks", 1.5), ("embed", "chunks", "auto"), ("embed", "chunks", (4, 4)), ("embed", "chunks", 0),
    ("embed", "chunks", -1), ("embed", "chunks", True), ("embed", "batch_size", True), ("embed", "tile_size", np.float64(224)),
    ("embed", "layer", "last"), ("embed", "layer", [0, 1]), ("embed", "layer", None), ("embed", "layer", -1.0),
    ("embed", "seed", "a"), ("embed", "check_input", "no"), ("embed", "coords", 1), ("embed", "tim", 5),
    ("embed", "tim", ["LULC", 3]),
    ("generate", "seed", "a"), ("generate", "seed", None), ("generate", "seed", 1.5), ("generate", "seed", False),
    ("generate", "blend", "no"), ("generate", "blend", 0), ("generate", "timesteps", 0), ("generate", "timesteps", "10"),
    ("generate", "timesteps", 10.0), ("generate", "top_k", 1.5), ("generate", "top_k", -1), ("generate", "top_p", "x"),
    ("generate", "top_p", 1.5), ("generate", "top_p", True), ("generate", "top_p", float("nan")),
    ("generate", "temperature", "1"), ("generate", "temperature", -0.5), ("generate", "chunks", np.float64(4)),
    ("tokenize", "tile_size", "224"), ("tokenize", "check_input", "yes"),
    ("detokenize", "seed", 2.5), ("detokenize", "timesteps", 0), ("detokenize", "chunks", "auto"),
])
def test_a_value_of_the_wrong_kind_names_the_keyword_and_what_it_got(cube, micro, verb, keyword, value):
    with pytest.raises(InputError) as caught:
        _call(verb, cube, micro, **{keyword: value})
    message = str(caught.value)
    assert message.startswith(f"{keyword} "), message
    assert f"got {value!r}" in message, message
    assert any(kind in message for kind in ("whole number", "a number", "True or False", "multiple of", "list of names")), message


def test_generate_targets_that_are_not_names_are_refused_in_its_words(cube, micro):
    with pytest.raises(InputError, match=r"^targets takes a name or a list of names, e.g. targets='LULC'.*got 5$"):
        cube.terramind.generate(5, micro)


def test_a_tim_string_is_one_name_as_generate_takes_it(cube, micro):
    one = cube.terramind.embed(micro, tim="LULC", seed=3)
    listed = cube.terramind.embed(micro, tim=["LULC"], seed=3)
    assert one.attrs["tim"] == listed.attrs["tim"] == ["tok_LULC"]
    assert one.data.name == listed.data.name  # the same graph: the same result


def test_numpy_whole_numbers_are_taken_and_recorded_as_plain_ints(cube, micro):
    emb = cube.terramind.embed(micro, tim=["LULC"], seed=np.int64(3), batch_size=np.int64(2), chunks=np.int32(12),
                               overlap=np.int64(32))
    assert (emb.attrs["seed"], emb.attrs["chunks"], emb.attrs["overlap"]) == (3, 12, 32)
    assert {type(emb.attrs[name]) for name in ("seed", "chunks", "overlap", "tile_size")} == {int}
    assert emb.chunks[-1][0] == 12


@pytest.mark.parametrize(("method", "mistake", "nearest"), [("to_zarr", "overwrte", "overwrite"),
                                                            ("to_zarr", "zarr_formt", "zarr_format"),
                                                            ("export", "quantise", "quantize"),
                                                            ("fewshot", "crss", "crs")])
def test_methods_with_a_fixed_signature_name_the_nearest_keyword_too(micro, cube, tmp_path, method, mistake, nearest):
    embeddings = cube.terramind.embed(micro)
    with pytest.raises(InputError, match=rf"{method} got an unknown option '{mistake}' \(did you mean '{nearest}'\?\)"):
        getattr(embeddings.terramind, method)(tmp_path / "out" if method != "fewshot" else {}, **{mistake: 1})
    assert not (tmp_path / "out").exists()
