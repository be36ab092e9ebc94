"""The ways the documentation says to open a store work. Every reader call shown in README.md, docs/**/*.md and
the notebooks' text (``xterramind.open(...)``, ``xr.open_zarr(...)``, ``rioxarray.open_rasterio(...)``,
``rasterio.open(...)``, ``gdalinfo '...'``, ``ZARR:"...":/VAR`` strings) is taken from there, its store path
replaced by a real store written here in the default format, run, and must give the result's CRS, transform
and values. A call that opens a ``.zarr`` path with a reader this file does not know fails, so that a new
form gets a check. Show what does *not* work without the call's parentheses (``xr.open_zarr`` alone ...).
The demo's last line, which says how to open its stores, is run the same way."""

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
import zarr
from affine import Affine

import xterramind
from xterramind import cli

ROOT = Path(__file__).parents[1]
NAMESPACE = {"xterramind": xterramind, "xr": xr, "xarray": xr, "rioxarray": rioxarray, "rasterio": rasterio,
             "zarr": zarr}
# what each reader gives back; GDAL (gdalinfo, QGIS, bare ZARR: strings) is checked through rasterio's GDAL
READERS = {xterramind.open: "xterramind.open", xr.open_zarr: "xr.open_zarr",
           rioxarray.open_rasterio: "rioxarray.open_rasterio", rasterio.open: "rasterio.open"}
RAW = {zarr.open_array: "zarr.open_array", zarr.open_group: "zarr.open_group"}  # raw zarr: must open, no CRS
CALL = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\(")
STORE_READER = re.compile(r"open|read|load", re.IGNORECASE)  # a call by such a name on a .zarr path reads a store
ZARR_STRING = re.compile(r"""ZARR:(?:"(?P<quoted>[^"]+)"|(?P<bare>[^\s"'`:]+)):(?P<inner>/[\w/]*)""")
GDALINFO = re.compile(r"gdalinfo\s+([^`\n]+)")
ZONE = re.compile(r"utm\d{1,2}[ns]")
GEOTIFF = re.compile(r"\.tiff?\b")
KINDS = {"lulc": "lulc", "embeddings": "embeddings", "int8": "embeddings", "area": "area", "europe": "area",
         "spain-floods": "area-prediction", "floods": "prediction"}  # store name -> store (the first key it holds)


@dataclass(frozen=True)
class Store:
    path: Path
    crs: object
    transform: object
    shape: tuple[int, int]  # y, x
    opens_as: type  # what xterramind.open gives
    zone: str | None = None  # an area run's store: the zone whose group holds the result

    def bands(self, variable: str) -> np.ndarray:
        """The variable as (band, y, x), read with zarr itself (no xarray, rioxarray or GDAL)."""
        array = zarr.open_array(str(self.path), path=f"{self.zone}/{variable}" if self.zone else variable, mode="r")
        return np.asarray(array[...]).reshape(-1, *self.shape)

    def holds(self, variable: str, values) -> bool:
        """Whether ``values`` (any shape with y, x last) are the variable's, band for band."""
        values = np.asarray(values)
        return values.shape[-2:] == self.shape and np.array_equal(values.reshape(-1, *self.shape), self.bands(variable),
                                                                  equal_nan=True)


@dataclass(frozen=True)
class Form:
    where: str  # file:line
    text: str  # as documented
    reader: str  # "python" (a call), "gdalinfo" or "gdal" (a bare ZARR: string)


# -- the forms, from the documentation ----------------------------------------------------------------------

def _documents() -> dict[str, str]:
    texts = {p.relative_to(ROOT).as_posix(): p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):  # their prose; their code runs in test_notebooks
        for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
            if cell["cell_type"] == "markdown":
                texts[f"{notebook.relative_to(ROOT).as_posix()} cell {index}"] = "".join(cell["source"])
    return texts


def _closing(text: str, start: int) -> int:
    """The index after the bracket that closes the one at ``start``, and after any subscripts that follow;
    -1 if it does not close. Quotes are honoured (a ZARR: string holds quotes of the other kind)."""
    depth, quote, i = 0, None, start
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char == "`" or text.startswith("\n\n", i):  # the end of inline code or of a paragraph: prose
            return -1
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth == 0 and text[i + 1:i + 2] != "[":
                return i + 1
        i += 1
    return -1


def _function(name: str | ast.expr):
    """What a dotted name from the docs is, among the reader modules; None if it is not there."""
    if isinstance(name, ast.expr):
        name = ast.unparse(name)
    try:
        return eval(name, dict(NAMESPACE))  # a dotted name from our own docs: attribute lookups only
    except (NameError, AttributeError, SyntaxError):
        return None


def _reader_name(form: Form) -> str:
    if form.reader != "python":
        return form.reader
    function = _function(form.text.split("(", 1)[0])
    return READERS.get(function) or RAW.get(function) or form.text.split("(", 1)[0]


def _is_reader(name: str, call: str) -> bool:
    if GEOTIFF.search(call) and ".zarr" not in call:  # a COG export, which tests/test_cog.py reads back
        return False
    function = _function(name)
    if function in READERS or function in RAW:
        return True
    last = name.rsplit(".", 1)[-1]
    return last in ("open_zarr", "open_rasterio") or (
        bool(STORE_READER.search(last)) and (".zarr" in call or "ZARR:" in call))


def forms(text: str, where: str = "") -> list[Form]:
    """Every way to open a store that ``text`` shows."""
    found, spans = [], []
    for match in CALL.finditer(text):
        end = _closing(text, match.end() - 1)
        call = text[match.start():end] if end > 0 else text[match.start():match.end() + 80]
        if _is_reader(match.group(1), call):
            found.append(Form(f"{where}:{text.count(chr(10), 0, match.start()) + 1}", call, "python"))
            spans.append((match.start(), end))
    for match in GDALINFO.finditer(text):
        found.append(Form(f"{where}:{text.count(chr(10), 0, match.start()) + 1}", match.group(0), "gdalinfo"))
        spans.append(match.span())
    for match in ZARR_STRING.finditer(text):
        if not any(start <= match.start() < end for start, end in spans):
            found.append(Form(f"{where}:{text.count(chr(10), 0, match.start()) + 1}", match.group(0), "gdal"))
    return found


DOCUMENTED = [form for where, text in _documents().items() for form in forms(text, where)]


# -- running a form on a store ----------------------------------------------------------------------------

class Elsewhere(Exception):
    """The form opens a kind of store that the stores at hand do not include (the demo writes no area run)."""


def _substitute(value: str, stores: dict[str, Store], used: set[str]) -> str:
    """A documented literal with the test's store in place of the documented one, and its zone."""
    gdal = ZARR_STRING.fullmatch(value)
    if gdal:
        store = _store_for(gdal["quoted"] or gdal["bare"], stores, used)
        inner = ZONE.sub(store.zone, gdal["inner"]) if store.zone else gdal["inner"]
        return f'ZARR:"{store.path}":{inner}'
    if value.rstrip("/").endswith(".zarr"):
        return str(_store_for(value, stores, used).path)
    if ZONE.fullmatch(value) and "area" in stores:
        return stores["area"].zone
    return value


def _store_for(documented: str, stores: dict[str, Store], used: set[str]) -> Store:
    name = Path(documented.rstrip("/")).name.removesuffix(".zarr")
    kind = next((kind for key, kind in KINDS.items() if key in name), None)
    if kind is None:
        pytest.fail(f"a documented store {documented!r} is none of those this test writes: map its name in KINDS",
                    pytrace=False)
    if kind not in stores:
        raise Elsewhere(kind)
    used.add(kind)
    return stores[kind]


class _Paths(ast.NodeTransformer):
    def __init__(self, stores: dict[str, Store]):
        self.stores, self.used = stores, set()

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            return ast.copy_location(ast.Constant(_substitute(node.value, self.stores, self.used)), node)
        return node


def open_form(form: Form, stores: dict[str, Store]) -> tuple[object, Store, str | None, str]:
    """Run a documented form on the test's stores: (what it opened, the store, the variable named, the reader)."""
    if form.reader != "python":
        name = shlex.split(form.text, comments=True)[-1] if form.reader == "gdalinfo" else form.text
        if not ZARR_STRING.fullmatch(name):
            pytest.fail(f"{form.where}: {form.text!r} names no ZARR:\"store\":/variable", pytrace=False)
        used = set()
        path = _substitute(name, stores, used)
        return rasterio.open(path), stores[used.pop()], name.rsplit("/", 1)[-1], form.reader
    try:
        tree = ast.parse(form.text.strip(), mode="eval")
    except SyntaxError:
        pytest.fail(f"{form.where}: {form.text!r} is not a call this test can run: show it with a literal store path",
                    pytrace=False)
    call = tree.body
    while isinstance(call, ast.Subscript):
        call = call.value
    function = _function(call.func)
    if function not in READERS and function not in RAW:
        pytest.fail(f"{form.where}: {form.text!r} opens a store with a reader this test does not know: "
                    f"add a check for it to tests/test_readers.py", pytrace=False)
    paths = _Paths(stores)
    tree = ast.fix_missing_locations(paths.visit(tree))
    kinds = sorted(paths.used)
    if len(kinds) != 1:
        pytest.fail(f"{form.where}: {form.text!r} shows no store path (a literal such as \"lulc.zarr\")", pytrace=False)
    named = [node.value.rsplit("/", 1)[-1] for node in ast.walk(call) if isinstance(node, ast.Constant)
             and isinstance(node.value, str) and ZARR_STRING.fullmatch(node.value)]
    named += [k.value.value for k in call.keywords if k.arg == "variable" and isinstance(k.value, ast.Constant)]
    opened = eval(compile(tree, form.where, "eval"), dict(NAMESPACE))
    return opened, stores[kinds[0]], (named or [None])[0], READERS.get(function) or RAW[function]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message, pytrace=False)


def check(form: Form, stores: dict[str, Store]) -> None:
    """The form opens its store georeferenced: the result's CRS, transform and values."""
    what = f"{form.where}: {form.text!r}"
    raised = None
    try:
        opened, store, variable, reader = open_form(form, stores)
    except (Elsewhere, pytest.fail.Exception):
        raise
    except Exception as error:  # the documented call itself fails
        raised = f"{type(error).__name__}: {error}"
    _expect(raised is None, f"{what} raised {raised}")
    if reader in RAW.values():  # the ledger or a raw array: that it opened is the check
        return
    if isinstance(opened, rasterio.io.DatasetReaderBase):
        with opened:
            _expect(opened.crs == store.crs, f"{what}: its crs is {opened.crs}")
            _expect(opened.transform == store.transform, f"{what}: its transform is {opened.transform!r}")
            _expect(store.holds(variable, opened.read()), f"{what}: its bands are not {variable}'s")
        return
    if reader == "xterramind.open":
        _expect(isinstance(opened, store.opens_as), f"{what} gave a {type(opened).__name__}")
    if isinstance(opened, xr.Dataset):
        _expect(opened.rio.crs == store.crs, f"{what}: the Dataset's rio.crs is {opened.rio.crs}")
        arrays = dict(opened.data_vars)
    elif isinstance(opened, xr.DataArray):
        arrays = {variable or opened.name: opened}
    else:
        pytest.fail(f"{what} gave a {type(opened).__name__}, not a georeferenced array", pytrace=False)
    _expect(bool(arrays), f"{what} opened no variable")
    for name, array in arrays.items():
        _expect(array.rio.crs == store.crs, f"{what}: {name}.rio.crs is {array.rio.crs}")
        _expect(array.rio.transform() == store.transform, f"{what}: {name}'s transform is {array.rio.transform()!r}")
        _expect(store.holds(name, array), f"{what}: {name} {array.shape} does not hold the stored values")


# -- the stores -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stores(tmp_path_factory, cube, micro, inprocess_client):
    """Embeddings, land cover, a fine-tuned model's prediction and area runs of the bundled scene (embeddings and
    a prediction), each written in the default format."""
    from tasks import task_config, write_task

    from xterramind.planner import plan_grid
    from xterramind.runner import run
    from xterramind.sources import CubeSource

    folder = tmp_path_factory.mktemp("stores")
    embeddings = cube.terramind.embed(micro)
    embeddings.terramind.to_zarr(folder / "embeddings.zarr", progress=False)
    cube.terramind.generate("LULC", micro, seed=7).terramind.to_zarr(folder / "lulc.zarr", progress=False)
    task = xterramind.load_task(*write_task(folder / "task", task_config(
        classes=2, class_names=["Others", "Water"], decoder="FCNDecoder", decoder_args={"channels": 8, "num_convs": 1},
        necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}])), device="cpu")
    cube.terramind.predict(task).terramind.to_zarr(folder / "floods.zarr", progress=False)
    plan = plan_grid(xterramind.modalities.grid_of(cube, "cube"), region=24)
    runs = {"area.zarr": ("embed", micro), "spain-floods.zarr": ("predict", task)}
    reports = [run(plan, CubeSource(cube), verb, model, folder / name, progress_bar=False, client=inprocess_client)
               for name, (verb, model) in runs.items()]
    assert all(report.written == report.regions for report in reports)
    tokens = dict(crs=embeddings.rio.crs, transform=embeddings.rio.transform(), shape=embeddings.shape[-2:],
                  opens_as=xr.DataArray)
    return {
        "embeddings": Store(folder / "embeddings.zarr", **tokens),
        "lulc": Store(folder / "lulc.zarr", cube.rio.crs, cube.rio.transform(), cube.shape[-2:], xr.Dataset),
        "area": Store(folder / "area.zarr", **tokens, zone=plan.zones[0].name),
        "prediction": Store(folder / "floods.zarr", cube.rio.crs, cube.rio.transform(), cube.shape[-2:], xr.Dataset),
        "area-prediction": Store(folder / "spain-floods.zarr", cube.rio.crs, cube.rio.transform(), cube.shape[-2:],
                                 xr.Dataset, zone=plan.zones[0].name),
    }


def test_the_documentation_shows_every_kind_of_reader():
    """The forms below are really found (a parser that found none would check nothing)."""
    shown = {_reader_name(form) for form in DOCUMENTED}
    assert set(READERS.values()) | {"gdalinfo", "gdal"} <= shown, shown
    readme = [form.text for form in DOCUMENTED if form.where.startswith("README.md")]
    assert any(text.startswith("xterramind.open(") for text in readme), readme


@pytest.mark.parametrize("form", DOCUMENTED, ids=[f"{form.where} {' '.join(form.text.split())}" for form in DOCUMENTED])
def test_every_documented_way_to_open_a_store_works(form, stores):
    check(form, stores)


@pytest.mark.parametrize("text", [
    'xr.open_zarr("lulc.zarr")',                                 # spatial_ref a data variable, no rio.crs
    'xr.open_zarr("embeddings.zarr")["embeddings"]',
    'rioxarray.open_rasterio("lulc.zarr")',                      # GDAL's subdatasets: the 1-D coordinates too
    'rioxarray.open_rasterio("lulc.zarr", variable=["LULC", "LULC_probability"])',  # LULC padded to 10 bands
    'rasterio.open("lulc.zarr")',
    "gdalinfo lulc.zarr",
    'ZARR:"lulc.zarr":/embeddings',                              # a variable the store does not have
    'xr.open_dataset("lulc.zarr", engine="zarr")',               # a reader this file has no check for
    "xterramind.open(path)",                                     # no store path to put the test's in
    'xterramind.open("labels.zarr")',                            # a store this file does not write
    'xterramind.open("lulc.zarr", zone="utm32n")',               # a zone of a store that has none
])
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # rasterio.open("lulc.zarr")
def test_the_check_fails_on_forms_that_do_not_work(text, stores):
    """What the check would say of such a form in the docs (each is found as a form, then refused)."""
    shown = forms(f"`{text}`", "example")
    assert len(shown) == 1, shown
    with pytest.raises(pytest.fail.Exception):
        check(shown[0], stores)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, cube):
    """``xterramind demo`` as a user runs it first (only the model made small): its stores and its output."""
    import contextlib
    import io

    output = tmp_path_factory.mktemp("demo") / "xterramind-demo"
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        assert cli.main(["demo", "--model", "terramind_micro", "--output", str(output)]) == 0
    height, width = cube.shape[-2:]
    stores = {  # the token grid: the cube's, 16 x coarser
        "embeddings": Store(output / "embeddings.zarr", cube.rio.crs, cube.rio.transform() * Affine.scale(16),
                            (height // 16, width // 16), xr.DataArray),
        "lulc": Store(output / "lulc.zarr", cube.rio.crs, cube.rio.transform(), cube.shape[-2:], xr.Dataset),
    }
    return stores, printed.getvalue()


def test_the_demos_last_line_opens_its_stores(demo):
    stores, printed = demo
    last = printed.strip().splitlines()[-1]
    shown = forms(last, "xterramind demo")
    assert shown, f"the demo's last line shows no way to open its stores: {last!r}"
    for form in shown:
        check(form, stores)


def test_the_documented_ways_open_what_the_demo_writes(demo):
    """README's first command writes the stores a user opens first, with the readers the docs show."""
    stores, _ = demo
    checked, failures = 0, []
    for form in DOCUMENTED:
        try:
            check(form, stores)
        except Elsewhere:  # an area run's store: the demo writes none
            continue
        except pytest.fail.Exception as failure:
            failures.append(str(failure))
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked > len(DOCUMENTED) / 2
