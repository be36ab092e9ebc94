"""Keyword arguments (``xterramind.arguments``): a misspelt name or a value of the wrong kind is an OptionError (an
InputError) that names the keyword, what it got and what it takes, before anything is computed (never a raw
TypeError from deep inside, never a silent truncation); the checkers themselves, and the verbs that use them."""

import numpy as np
import pytest

from xterramind import arguments
from xterramind.arguments import check_keywords, checked, flag, keywords, names, nearest, number, unknown, whole_number
from xterramind.errors import InputError, OptionError


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
    with pytest.raises(OptionError) as caught:
        _call(verb, cube, micro, **{wrong: 64})
    message = str(caught.value)
    assert message.startswith(f"{verb} got an unknown option {wrong!r} (did you mean {meant!r}?); its options are [")
    assert "_verb" not in message and f"'{meant}'" in message.split("its options are")[1]


def test_several_unknown_keywords_are_all_named_and_a_far_one_gets_no_guess(cube, micro):
    with pytest.raises(OptionError) as caught:
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
    with pytest.raises(OptionError) as caught:
        _call(verb, cube, micro, **{keyword: value})
    message = str(caught.value)
    assert message.startswith(f"{keyword} "), message
    assert f"got {value!r}" in message, message
    assert any(kind in message for kind in ("whole number", "a number", "True or False", "multiple of", "list of names")), message


def test_generate_targets_that_are_not_names_are_refused_in_its_words(cube, micro):
    with pytest.raises(OptionError, match=r"^targets takes a name or a list of names, e.g. targets='LULC'.*got 5$"):
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


# -- the checkers ------------------------------------------------------------------------------------------------------


def _verb(cube, *, seed=0, targets, tile_size=224):
    return seed, targets, tile_size


def test_keywords_are_the_required_and_all_the_taken_names_without_those_skipped():
    assert keywords(_verb, skip=("cube",)) == (["targets"], ["seed", "targets", "tile_size"])
    assert keywords(lambda self, a, *rest, b=1, **more: None, skip=("self",)) == (["a"], ["a", "b"])
    assert unknown({"seed": 0, "zzz": 1, "Seed": 2}, ["seed"]) == ["Seed", "zzz"]


@pytest.mark.parametrize(("given", "guess"), [("tilesize", "tile_size"), ("Seed", "seed"), ("TARGETS", "targets"),
                                              ("zzz", None), ("", None)])
def test_nearest_guesses_a_near_miss_only(given, guess):
    assert nearest(given, ["seed", "targets", "tile_size"]) == guess


def test_check_keywords_names_every_unknown_one_with_its_guess_and_every_taken_one():
    check_keywords("verb", {"seed": 1, "targets": []}, _verb, skip=("cube",))  # all taken: nothing raised
    with pytest.raises(OptionError) as caught:
        check_keywords("verb", {"sed": 1, "qqq": 2}, _verb, skip=("cube",))
    assert str(caught.value) == ("verb got unknown options 'qqq', 'sed' (did you mean 'seed'?); its options are "
                                 "['seed', 'targets', 'tile_size']")
    with pytest.raises(OptionError, match="unknown option 'cube'"):  # skipped names are not options
        check_keywords("verb", {"cube": 1}, _verb, skip=("cube",))


def test_checked_refuses_before_the_method_runs_and_passes_what_it_takes():
    calls = []

    class Thing:
        @checked("write")
        def write(self, path, *, overwrite=False):
            calls.append((path, overwrite))
            return path

    assert Thing().write("a", overwrite=True) == "a" and calls == [("a", True)]
    with pytest.raises(OptionError, match=r"^write got an unknown option 'overwrte' \(did you mean 'overwrite'\?\)"):
        Thing().write("b", overwrte=True)
    assert calls == [("a", True)] and Thing.write.__name__ == "write"


@pytest.mark.parametrize("value", [8, np.int64(8), np.uint8(8)])
def test_whole_numbers_come_back_as_plain_ints(value):
    assert whole_number("batch_size", value, 1) == 8 and type(whole_number("batch_size", value, 1)) is int


@pytest.mark.parametrize(("value", "minimum", "optional", "said"), [
    (True, 1, False, "batch_size must be a whole number of at least 1, got True"),
    (2.0, None, False, "batch_size must be a whole number, got 2.0"),
    ("8", 1, False, "batch_size must be a whole number of at least 1, got '8'"),
    (0, 1, False, "batch_size must be a whole number of at least 1, got 0"),
    (None, 1, False, "batch_size must be a whole number of at least 1, got None"),
    ("x", 1, True, "batch_size must be a whole number of at least 1 (or None for the default), got 'x'"),
])
def test_whole_number_refuses_what_is_not_one_with_an_option_error(value, minimum, optional, said):
    with pytest.raises(OptionError) as caught:
        whole_number("batch_size", value, minimum, optional=optional)
    assert str(caught.value) == said
    assert whole_number("batch_size", None, 1, optional=True) is None


@pytest.mark.parametrize(("value", "said"), [
    ("0.5", "top_p must be a number from 0 to 1, got '0.5'"), (True, "top_p must be a number from 0 to 1, got True"),
    (1.5, "top_p must be a number from 0 to 1, got 1.5"), (float("nan"), "top_p must be a number from 0 to 1, got nan"),
    (np.bool_(True), "top_p must be a number from 0 to 1, got np.True_"),
])
def test_number_refuses_what_is_not_a_number_in_bounds(value, said):
    assert number("top_p", np.float32(0.5), 0, 1) == 0.5 and number("t", 7, 0) == 7.0
    with pytest.raises(OptionError) as caught:
        number("top_p", value, 0, 1)
    assert str(caught.value) == said


def test_bounds_are_said_as_far_as_they_go():
    for bounds, said in [((0, None), " of at least 0"), ((None, 1), " of at most 1"), ((None, None), "")]:
        with pytest.raises(OptionError, match=rf"^t must be a number{said}, got 'x'$"):
            number("t", "x", *bounds)


@pytest.mark.parametrize("value", ["no", 0, 1, None, "False"])
def test_a_flag_is_true_or_false_only(value):
    assert flag("blend", np.bool_(False)) is False and flag("blend", True) is True
    with pytest.raises(OptionError, match=rf"^blend must be True or False, got {value!r}$"):
        flag("blend", value)


def test_names_take_one_name_a_list_of_them_or_none():
    assert names("tim", "LULC", "LULC") == ["LULC"] and names("tim", ("LULC", "DEM"), "LULC") == ["LULC", "DEM"]
    assert names("tim", None, "LULC") == []
    for value in (5, ["LULC", 3], [b"LULC"]):
        with pytest.raises(OptionError, match=r"^tim takes a name or a list of names, e.g. tim='LULC'"):
            names("tim", value, "LULC")


def test_every_checker_raises_an_option_error_that_old_except_clauses_still_catch():
    for check in (lambda: whole_number("a", "x"), lambda: number("a", "x"), lambda: flag("a", "x"),
                  lambda: names("a", 5, "b"), lambda: check_keywords("v", {"zz": 1}, _verb)):
        with pytest.raises(InputError) as caught:
            check()
        assert type(caught.value) is OptionError
    assert all(callable(getattr(arguments, name)) for name in arguments.__all__)
