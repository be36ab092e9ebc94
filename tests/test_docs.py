"""The documentation site builds with warnings as errors, and everything its API reference renders has a
docstring; every public function and method there shows an example."""

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest  # mkdocs, mkdocs-material and mkdocstrings come with the docs extra (in dev)

ROOT = Path(__file__).parents[1]
DIRECTIVE = re.compile(r"^::: ([\w.]+)", re.MULTILINE)


def _resolve(dotted: str):
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(dotted)


def _documented() -> dict[str, object]:
    """Every object the reference pages render, by dotted name: modules expand to their ``__all__``,
    classes to their public methods and properties."""
    found = {}
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        for dotted in DIRECTIVE.findall(page.read_text()):
            target = _resolve(dotted)
            if inspect.ismodule(target):
                assert hasattr(target, "__all__"), f"{dotted} has no __all__: say what is public"
                members = {f"{dotted}.{name}": getattr(target, name) for name in target.__all__}
            else:
                members = {dotted: target}
            for name, member in members.items():
                found[name] = member
                if inspect.isclass(member) and not issubclass(member, BaseException):
                    for attribute, value in vars(member).items():
                        if not attribute.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                            found[f"{name}.{attribute}"] = value
    return found


DOCUMENTED = _documented()


def test_the_reference_renders_the_public_api():
    import xterramind

    assert {f"xterramind.{name}" for name in ("load_model", "list_models", "open_sample")} <= set(DOCUMENTED)
    assert "xterramind.accessor.TerraMindAccessor.plot" in DOCUMENTED
    assert "xterramind.runner.run" in DOCUMENTED and "xterramind.stac.load" in DOCUMENTED
    assert all(isinstance(getattr(xterramind, name), type) or f"xterramind.{name}" in DOCUMENTED
               for name in xterramind.__all__ if callable(getattr(xterramind, name)))


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_every_public_object_has_a_docstring_with_an_example(name):
    member = DOCUMENTED[name]
    doc = inspect.getdoc(member.fget if isinstance(member, property) else member) or ""
    assert len(doc) > 20, f"{name} needs a docstring"
    if inspect.isfunction(member):
        assert ">>>" in doc, f"{name}'s docstring needs an example (an 'Example:' section with >>> lines)"


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "accessor" / "index.html").read_text().count("terramind") > 10


def test_the_command_line_help_shows_real_commands_and_a_valid_config(tmp_path, capsys):
    from xterramind import cli
    from xterramind.config import load_config

    for command in sorted(set(re.findall(r"xterramind (\w+)", cli.EXAMPLES))):
        with pytest.raises(SystemExit) as done:
            cli.main([command, "--help"])
        assert done.value.code == 0, command
    assert "usage: xterramind run" in capsys.readouterr().out
    example = [line[2:] for line in cli.RUN_EXAMPLE.splitlines() if line.startswith("  ")]
    (tmp_path / "area.yaml").write_text("\n".join(example))
    config = load_config(tmp_path / "area.yaml")
    assert config.verb == "embed" and config.source["modalities"] == ["S2L2A"]


def test_help_on_the_package_starts_a_newcomer_off():
    import pydoc

    import xterramind

    text = pydoc.render_doc(xterramind, renderer=pydoc.plaintext)
    for entry in ("open_sample()", "load_model(", 'generate("LULC"', "plot()", "to_zarr(", "xterramind run CONFIG"):
        assert entry in text, entry
