"""The documentation site builds with warnings as errors, and everything its API reference renders has a
docstring; every public function and method there shows an example. The built HTML is read back: pictures
are pictures, examples are code blocks, no markdown is left raw."""

import importlib
import inspect
import re
import subprocess
import sys
from html.parser import HTMLParser
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


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with warnings as errors."""
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return site


class _Page(HTMLParser):
    """One built page: its prose (text outside code), its code blocks, its images, its nested block quotes."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
    CODE = frozenset({"pre", "code", "script", "style", "textarea"})

    def __init__(self, path: Path):
        super().__init__()
        self.open, self.prose, self.blocks, self.images, self.nested_quotes = [], [], [], [], 0
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src") or "")
        if tag == "pre":
            self.blocks.append("")
        if tag == "blockquote" and "blockquote" in self.open:
            self.nested_quotes += 1
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if tag in self.open:  # close it and whatever was left open inside it
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag):]

    def handle_data(self, data):
        if "pre" in self.open:
            self.blocks[-1] += data
        elif not self.CODE & set(self.open):
            self.prose.append(data)


@pytest.fixture(scope="module")
def pages(site) -> dict[Path, _Page]:
    """Every HTML page of the site, read."""
    return {path: _Page(path) for path in sorted(site.rglob("*.html"))}


def _page_of(markdown: Path, site: Path) -> Path:
    """Where mkdocs (directory URLs) writes the page of ``docs/<markdown>``."""
    relative = markdown.relative_to(ROOT / "docs").with_suffix("")
    return site / (relative.parent if relative.name == "index" else relative) / "index.html"


# Markdown that did not render: an image, a link, an attribute list, a code fence, a "::: module" directive.
RAW_MARKDOWN = re.compile(r"!\[|\]\(|\{:?\s*(?:[.#][\w-]+|[\w-]+=)[^}]*\}|```|^::: ", re.MULTILINE)


def test_the_site_builds_with_warnings_as_errors(site, pages):
    assert (site / "reference" / "accessor" / "index.html").read_text().count("terramind") > 10
    assert len(pages) > len(list((ROOT / "docs").rglob("*.md")))  # every page, plus 404


def test_git_ignores_what_a_plain_mkdocs_build_writes():
    ignored = set((ROOT / ".gitignore").read_text().split())
    assert {"site/", "/site/"} & ignored, "mkdocs build writes site/: .gitignore needs /site/"


def test_no_page_shows_raw_markdown_and_every_picture_is_an_image(site, pages):
    for path, page in pages.items():
        raw = RAW_MARKDOWN.findall("".join(page.prose))
        assert not raw, f"{path.relative_to(site)} shows raw markdown {raw} (an extension missing in mkdocs.yml?)"
        for source in page.images:
            if not source.startswith(("http:", "https:", "data:")):
                assert (path.parent / source).resolve().is_file(), f"{path.relative_to(site)}: no picture {source}"
    for markdown in sorted((ROOT / "docs").rglob("*.md")):
        page = _page_of(markdown, site)
        shown = {(page.parent / source).resolve() for source in pages[page].images}
        for picture in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", markdown.read_text()):
            target = site / (markdown.parent / picture).resolve().relative_to((ROOT / "docs").resolve())
            assert target.is_file() and target.resolve() in shown, f"{markdown.name}: {picture} is not an <img>"


def test_every_object_the_reference_names_is_on_the_site(site):
    anchors = {anchor for page in (site / "reference").rglob("*.html")
               for anchor in re.findall(r'<h\d id="(xterramind[\w.]*)"', page.read_text())}
    for name, member in DOCUMENTED.items():
        defined = f"{getattr(member, '__module__', '')}.{getattr(member, '__qualname__', '')}"
        assert {name, defined} & anchors, f"{name} is public but the API reference does not show it"


def test_every_example_is_a_code_block(site, pages):
    for path, page in pages.items():
        assert page.nested_quotes == 0, f"{path.relative_to(site)}: '>>>' lines rendered as nested block quotes"
        assert ">>>" not in "".join(page.prose), f"{path.relative_to(site)}: a '>>>' example outside a code block"
    code = {line.strip() for page in pages.values() for block in page.blocks for line in block.splitlines()}
    modules = {dotted: _resolve(dotted) for page in (ROOT / "docs" / "reference").glob("*.md")
               for dotted in DIRECTIVE.findall(page.read_text())}
    examples = 0
    for name, member in (DOCUMENTED | modules).items():
        member = member.fget if isinstance(member, property) else member
        own = inspect.isroutine(member) or inspect.isclass(member) or inspect.ismodule(member)  # not a constant's type
        for line in (member.__doc__ or "").splitlines() if own else ():
            if line.strip().startswith(">>>"):
                examples += 1
                assert line.strip() in code, f"{name}'s example {line.strip()!r} is not in a code block of the site"
    assert examples > len(DOCUMENTED)


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
