"""The exception types (``xterramind.errors``): one base, specific types under ``InputError`` and ``StoreError`` so that
old ``except`` clauses still catch them, and every error the package raises on purpose is one of them."""

import ast
from pathlib import Path

import pytest

from xterramind import errors
from xterramind.errors import (
    ConfigError,
    ForeignStoreError,
    GridMismatchError,
    InputError,
    Interrupted,
    MissingBandsError,
    MissingCRSError,
    NoValidDataError,
    OptionError,
    StoreError,
    StoreExistsError,
    UnknownModalityError,
    UnknownModelError,
    XterramindError,
)

PACKAGE = Path(errors.__file__).parent
INPUT = (MissingCRSError, GridMismatchError, MissingBandsError, NoValidDataError, OptionError, ConfigError)
STORE = (StoreExistsError, ForeignStoreError)
OUTSIDE = {"ArgumentTypeError"}  # argparse turns it into its own usage error, which the CLI prints as one line


@pytest.mark.parametrize("kind", INPUT + STORE)
def test_each_specific_type_is_caught_by_its_old_base(kind):
    base = InputError if kind in INPUT else StoreError
    with pytest.raises(base) as caught:
        raise kind("what went wrong; the fix")
    assert isinstance(caught.value, XterramindError) and str(caught.value) == "what went wrong; the fix"
    assert issubclass(kind, ValueError) == (base is InputError)  # InputError is a ValueError, StoreError is not


def test_every_public_type_is_an_xterramind_error_but_the_warning_and_ctrl_c():
    for name in errors.__all__:
        kind = getattr(errors, name)
        if name in ("InputWarning", "Interrupted"):
            assert not issubclass(kind, XterramindError)
        else:
            assert issubclass(kind, XterramindError), name
        assert kind.__doc__, name
    assert issubclass(Interrupted, KeyboardInterrupt) and issubclass(errors.InputWarning, UserWarning)
    defined = {name for name, value in vars(errors).items() if isinstance(value, type) and value.__module__ == errors.__name__}
    assert defined == set(errors.__all__)


def test_name_errors_are_key_errors_whose_message_is_not_quoted():
    for kind in (UnknownModelError, UnknownModalityError):
        error = kind("unknown model 'x'; choose one of [...]")
        assert isinstance(error, KeyError) and str(error) == "unknown model 'x'; choose one of [...]"


def _raised_types(path: Path):
    """``(line, name)`` of each exception class a module raises by name: ``raise Name(...)`` or ``raise a.Name(...)``
    (re-raising a caught error, or raising what a helper function builds, names no class)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            function = node.exc.func
            name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", "")
            if name[:1].isupper():
                yield node.lineno, name


def test_every_error_the_package_raises_is_an_xterramind_type():
    foreign = [f"{path.relative_to(PACKAGE.parent)}:{line}: raise {name}" for path in sorted(PACKAGE.rglob("*.py"))
               for line, name in _raised_types(path) if name not in errors.__all__ and name not in OUTSIDE]
    assert not foreign, "raises of other exception types:\n  " + "\n  ".join(foreign)


def test_the_scan_finds_a_foreign_raise(tmp_path):
    (tmp_path / "mod.py").write_text("def f(x):\n    if x:\n        raise ValueError('no')\n    raise errors.InputError('ok')\n"
                                     "def g(e):\n    raise e\n")
    assert sorted(_raised_types(tmp_path / "mod.py")) == [(3, "ValueError"), (4, "InputError")]
