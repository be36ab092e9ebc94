"""Checks of keyword arguments, shared by every verb and interface: names a function does not take (with the
nearest one it does) and values of the wrong kind, each said with the keyword's name, before any work starts."""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import numbers

import numpy as np

from .errors import OptionError

__all__ = ["check_keywords", "checked", "dtype_name", "flag", "keywords", "names", "nearest", "number", "unknown",
           "whole_number"]


def keywords(function, skip=()) -> tuple[list[str], list[str]]:
    """The keyword arguments ``function`` requires, and every one it takes (sorted), leaving out ``skip``.

    Example:
        >>> keywords(lambda cube, *, seed=0, targets: None, skip=("cube",))
        (['targets'], ['seed', 'targets'])
    """
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    taken = [p for p in inspect.signature(function).parameters.values() if p.kind in kinds and p.name not in skip]
    return [p.name for p in taken if p.default is p.empty], sorted(p.name for p in taken)


def unknown(given, taken) -> list[str]:
    """The names in ``given`` that are not in ``taken``, sorted.

    Example:
        >>> unknown({"tilesize": 64, "seed": 0}, ["seed", "tile_size"])
        ['tilesize']
    """
    return sorted(set(given) - set(taken))


def nearest(name, taken) -> str | None:
    """The name in ``taken`` nearest to the misspelt ``name``, or ``None`` if none is near.

    Example:
        >>> nearest("tilesize", ["seed", "tile_size"])
        'tile_size'
    """
    close = difflib.get_close_matches(str(name).lower(), [str(t) for t in taken], n=1)
    return close[0] if close else None


def check_keywords(verb: str, options: dict, function, skip=()) -> None:
    """Fail on a keyword in ``options`` that ``function`` (what ``verb`` hands them to) does not take, naming the
    nearest one it does: Python's own TypeError would name an internal function and guess nothing.

    Example:
        >>> check_keywords("embed", {"tilesize": 64}, engine.embed_verb, skip=("cube", "model"))
        Traceback (most recent call last):
        OptionError: embed got an unknown option 'tilesize' (did you mean 'tile_size'?); its options are [...]
    """
    taken = keywords(function, skip)[1]
    wrong = unknown(options, taken)
    if not wrong:
        return
    said = []
    for name in wrong:
        guess = nearest(name, taken)
        said.append(f"{name!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    what = f"an unknown option {said[0]}" if len(said) == 1 else f"unknown options {', '.join(said)}"
    raise OptionError(f"{verb} got {what}; its options are {taken}")


def checked(verb: str):
    """A decorator: keywords the function does not take fail as ``check_keywords`` says, before it runs (for
    methods with a fixed signature, where Python's TypeError would guess nothing).

    Example:
        >>> @checked("to_zarr")
        ... def to_zarr(self, path, *, overwrite=False): ...
    """

    def decorate(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            check_keywords(verb, kwargs, function, skip=("self",))
            return function(*args, **kwargs)

        return call

    return decorate


def whole_number(name: str, value, minimum: int | None = None, *, optional: bool = False) -> int | None:
    """``value`` as an int, or an error naming ``name``: a float (even ``2.0``, which could hide a computed
    ``2.5``), a string or a bool (``True`` is 1 to Python) is refused. ``optional``: ``None`` too is taken.

    Example:
        >>> whole_number("batch_size", 8, 1)
        8
        >>> whole_number("batch_size", True, 1)
        Traceback (most recent call last):
        OptionError: batch_size must be a whole number of at least 1, got True
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" of at least {minimum}"
        default = " (or None for the default)" if optional else ""
        raise OptionError(f"{name} must be a whole number{at_least}{default}, got {value!r}")
    return int(value)


def number(name: str, value, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a float within ``[minimum, maximum]``, or an error naming ``name`` (strings and bools refused).

    Example:
        >>> number("top_p", 0.8, 0, 1)
        0.8
    """
    if not (_real(value) and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)):
        bounds = (f" from {minimum} to {maximum}" if None not in (minimum, maximum)
                  else f" of at least {minimum}" if minimum is not None
                  else f" of at most {maximum}" if maximum is not None else "")
        raise OptionError(f"{name} must be a number{bounds}, got {value!r}")
    return float(value)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and not np.isnan(value)


def flag(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``: anything else (``"no"`` is truthy) is an error naming ``name``.

    Example:
        >>> flag("blend", False)
        False
    """
    if not isinstance(value, bool | np.bool_):
        raise OptionError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def names(name: str, value, example: str) -> list[str]:
    """``value`` as a list of names: a string is one name (never its letters), ``None`` none.

    Example:
        >>> names("tim", "LULC", "LULC")
        ['LULC']
    """
    if value is None:
        return []
    try:
        listed = [value] if isinstance(value, str) else list(value)
    except TypeError:
        listed = None
    if listed is None or not all(isinstance(item, str) for item in listed):
        raise OptionError(f"{name} takes a name or a list of names, e.g. {name}={example!r} or {name}=[{example!r}], "
                         f"got {value!r}")
    return listed


def dtype_name(name: str, value, allowed, *, optional: bool = False) -> str | None:
    """``value`` (a dtype's name, or a numpy dtype or type) as the name of one of the ``allowed`` dtypes, or an
    error naming ``name`` and them. ``optional``: ``None`` and ``False`` are taken too (nothing stored).

    Example:
        >>> dtype_name("dtype", np.float16, ("float32", "float16"))
        'float16'
        >>> dtype_name("dtype", "f2", ("float32", "float16"))
        Traceback (most recent call last):
        OptionError: dtype must be 'float32' or 'float16', got 'f2'
    """
    if optional and (value is None or value is False):
        return None
    named = value if isinstance(value, str) else None
    if named is None and value is not None and not isinstance(value, bool):  # np.dtype(None) is float64
        with contextlib.suppress(TypeError, ValueError):
            named = np.dtype(value).name
    if named not in allowed:
        listed = [repr(a) for a in allowed] + ["None (not stored)"] * optional
        raise OptionError(f"{name} must be {', '.join(listed[:-1])} or {listed[-1]}, got {value!r}")
    return named
