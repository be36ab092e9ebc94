"""Run configuration files (``xterramind.config``): a YAML or JSON file turned into a source, a plan and a model;
every mistake in it a ConfigError (an InputError) naming the setting and its fix in the file's own words, before
anything is loaded or planned."""

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

from xterramind import config as config_module
from xterramind import planner, runner, runtime, sources
from xterramind.config import RunConfig, load_config
from xterramind.data import SAMPLE_STACK
from xterramind.errors import ConfigError, InputError
from xterramind.modalities import grid_of

AREA = [9.0, 45.0, 9.12, 45.08]
GOOD = {"area": AREA, "source": {"synthetic": {"modalities": ["S2L2A"], "seed": 3}}, "model": "terramind_micro",
        "weights": "random", "device": "cpu", "precision": "fp32", "output": "out.zarr", "region": 24}
PYTHON = re.compile(r"\w=|\(\)|\bNone\b|\bTrue\b|\bFalse\b|\{\w+=")  # keywords, calls, Python's own constants


def _file(folder: Path, settings: dict, name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(settings) if name.endswith(".yaml") else json.dumps(settings))
    return path


def test_a_file_becomes_settings_with_paths_relative_to_it(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    _file(tmp_path / "runs", GOOD | {"area": "area.geojson", "verb": "generate", "options": {"targets": ["LULC"]},
                                     "in_flight": 4, "gpu": False, "zarr_format": 3, "cluster": None})
    monkeypatch.chdir(tmp_path)  # elsewhere: paths still found beside the file
    config = load_config("runs/run.yaml")
    assert isinstance(config, RunConfig) and config.folder == Path("runs")
    assert config.area == str(Path("runs") / "area.geojson") and config.output == Path("runs") / "out.zarr"
    assert (config.verb, config.options, config.region, config.in_flight) == ("generate", {"targets": ["LULC"]}, 24, 4)
    assert (config.gpu, config.zarr_format, config.cluster, config.resolution) == (False, 3, None, 10.0)
    assert load_config(_file(tmp_path, GOOD, "run.json")).source == GOOD["source"]


def test_the_objects_a_run_needs_are_made_from_the_settings(tmp_path):
    config = load_config(_file(tmp_path, GOOD))
    source = config.make_source()
    assert isinstance(source, sources.SyntheticSource) and source.modalities == ("S2L2A",) and source.seed == 3
    plan = config.make_plan(source)
    expected = planner.plan_area(AREA, resolution=10.0, region=24)
    assert [(z.name, z.grid, z.region_size) for z in plan.zones] == [(z.name, z.grid, z.region_size) for z in expected.zones]
    loads = sum(runtime.loads.values())
    model = config.make_model(stand_in=True)
    assert (model.name, model.weights_id, str(model.device)) == ("terramind_micro", "random", "cpu")
    assert sum(runtime.loads.values()) >= loads


def test_a_cube_source_is_planned_on_the_cubes_own_grid(tmp_path):
    config = load_config(_file(tmp_path, GOOD | {"source": {"cube": str(SAMPLE_STACK)},
                                                 "area": [-75.64, 37.65, -75.6, 37.69]}))
    source = config.make_source()
    assert isinstance(source, sources.CubeSource)
    plan = config.make_plan(source)
    stack = source.cube.sel(band=source.cube.band.values[0])
    assert plan.zones[0].grid.same_as(grid_of(stack, "the cube")) and plan.zones[0].grid.same_as(source.grid)


def test_the_config_module_only_turns_a_file_into_calls():
    """It resolves no modalities and reads no grids itself: that is the sources' and the planner's job."""
    tree = ast.parse(Path(config_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    imported |= {f"{node.module or ''}.{alias.name}".strip(".") for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level for alias in node.names}
    assert not {"modalities", "geo", "grid"} & {name.split(".")[0] for name in imported if name}, imported


MISTAKES = [  # settings (merged into GOOD; None: left out), what the message must say
    ({"speed": 3}, ["unknown settings ['speed']"]),
    ({"regoin": 24}, ["unknown settings ['regoin'] (did you mean region:?)"]),
    ({"output": None}, ["missing ['output']", "area:, source: and output:"]),
    ({"source": {"stac": "a", "cube": "b"}}, ["source: needs exactly one of", "source: {stac: catalog.json}"]),
    ({"source": "scene.zarr"}, ["source: needs exactly one of"]),
    ({"source": {"stac": "a", "colections": ["s2"]}}, ["unknown settings ['colections'] in a stac source",
                                                       "(did you mean collections:?)"]),
    ({"source": {"synthetic": {"lnd": AREA}}}, ["source: {synthetic: ...} takes a mapping of"]),
    ({"source": {"synthetic": {"modalities": "S2L2A"}}}, ["source: {synthetic: {modalities: ...}} must be a list",
                                                          "modalities: [S2L2A]"]),
    ({"source": {"synthetic": {"seed": "x"}}}, ["source: {synthetic: {seed: ...}} must be a whole number"]),
    ({"source": {"synthetic": {"land": 5}}}, ["source: {synthetic: {land: ...}} must be [west, south, east, north]"]),
    ({"source": {"stac": 5}}, ["source: {stac: ...} must be a path or URL, got 5"]),
    ({"source": {"cube": ["a.zarr"]}}, ["source: {cube: ...} must be a path"]),
    ({"source": {"stac": "a", "modalities": "S2L2A"}}, ["source: {modalities: ...} must be a list of names"]),
    ({"source": {"stac": "a", "collections": []}}, ["source: {collections: ...} must be a list of names"]),
    ({"source": {"stac": "a", "mask_clouds": "yes"}}, ["source: {mask_clouds: ...} must be true or false"]),
    ({"source": {"stac": "a", "composite": "mean"}}, ["source: {composite: ...} must be median (or left out)"]),
    ({"options": [1]}, ["options: must be a mapping", "{batch_size: 64}"]),
    ({"options": {"batchsize": 3}}, ["options: unknown ['batchsize'] for verb: embed", "batch_size"]),
    ({"options": {"tile_size": 3}}, ["belong to the plan", "region: (tokens)"]),
    ({"options": {"dtype": "int4"}}, ["options: dtype: must be one of float32, float16, int8, got 'int4'"]),
    ({"options": {"dtype": None}}, ["options: dtype: must be one of float32, float16, int8, got null"]),
    ({"verb": "generate", "options": {"targets": ["LULC"], "probabilities": "yes"}},
     ["options: probabilities: must be one of uint8, float32, null, false, got 'yes'"]),
    ({"verb": "generate", "options": {"targets": ["LULC"], "probabilities": True}},
     ["options: probabilities: must be one of uint8, float32, null, false, got true"]),
    ({"verb": "generate"}, ["verb: generate needs options: {targets: [LULC]}"]),
    ({"verb": "paint"}, [f"verb: must be one of {', '.join(runner.VERBS)}, got 'paint'"]),
    ({"verb": ["embed"]}, ["verb: must be one of"]),
    ({"gpu": "maybe"}, ["gpu: must be one of auto, true, false"]),
    ({"zarr_format": "2"}, ["zarr_format: must be one of 2, 3"]),
    ({"in_flight": 0}, ["in_flight: must be a whole number of at least 1, got 0"]),
    ({"in_flight": 2.0}, ["in_flight: must be a whole number"]),
    ({"region": "big"}, ["region: must be a whole number of at least 1, got 'big'"]),
    ({"region": 0}, ["region: must be a whole number of at least 1"]),
    ({"region": True}, ["region: must be a whole number"]),
    ({"resolution": "10m"}, ["resolution: must be a positive number of metres per pixel", "resolution: 10"]),
    ({"resolution": 0}, ["resolution: must be a positive number"]),
    ({"area": 5}, ["area: must be [west, south, east, north]", "area: [9.0, 45.0, 9.5, 45.5]"]),
    ({"area": [9, 45, 9.1]}, ["area: must be [west, south, east, north]"]),
    ({"model": "terramind_v9"}, ["model: unknown model 'terramind_v9'"]),
    ({"model": 3}, ["model: must be a model name", "model: terramind_v1_base"]),
    ({"weights": 3}, ["weights: must be auto, random or a checkpoint file, got 3"]),
    ({"device": "gpu"}, ["device: must be auto, cpu, cuda or cuda:N, got 'gpu'"]),
    ({"device": 0}, ["device: must be auto, cpu, cuda or cuda:N"]),
    ({"precision": "int4"}, ["precision: must be auto, fp32, bf16 or fp16, got 'int4'"]),
    ({"output": ["a.zarr"]}, ["output: must be a path"]),
    ({"cluster": 8786}, ["cluster: must be a scheduler's address"]),
]


@pytest.mark.parametrize(("settings", "says"), MISTAKES, ids=[str(m[0]) for m in MISTAKES])
def test_a_mistake_is_a_config_error_naming_the_setting_in_the_files_words(tmp_path, settings, says):
    path = _file(tmp_path, {k: v for k, v in (GOOD | settings).items() if v is not None})
    loads = sum(runtime.loads.values())
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and all(text in message for text in says), message
    assert not PYTHON.search(message.removeprefix(f"{path}: ")), message
    assert sum(runtime.loads.values()) == loads  # found before any model was built


def test_a_file_that_cannot_be_read_is_a_config_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("area: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- area\n")
    for path, says in [(tmp_path / "nothere.yaml", "cannot read the run configuration"), (tmp_path, "cannot read"),
                       (tmp_path / "bad.yaml", "is not valid YAML"), (tmp_path / "list.yaml", "must hold a mapping")]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_config(path)


def test_a_cube_that_is_not_there_or_not_a_cube_is_a_config_error(tmp_path):
    (tmp_path / "plain").mkdir()
    for cube, says in [("nowhere.zarr", "no cube at"), ("plain", "neither a zarr store nor a raster file")]:
        config = load_config(_file(tmp_path, GOOD | {"source": {"cube": cube}}))
        with pytest.raises(ConfigError, match=rf"^source: {{cube: \.\.\.}}: .*{says}") as caught:
            config.make_source()
        assert isinstance(caught.value, InputError)


def test_values_are_quoted_as_the_file_spells_them(tmp_path):
    for settings, got in [({"region": True}, "got true"), ({"weights": None}, "got null"), ({"gpu": "maybe"}, "got 'maybe'"),
                          ({"area": [1, True]}, "got [1, true]"), ({"output": {"a": 1}}, "got {a: 1}")]:
        with pytest.raises(ConfigError, match=re.escape(got) + "$"):
            load_config(_file(tmp_path, GOOD | settings))


def test_an_output_dtype_in_a_file_reaches_the_verb_and_its_sizes(tmp_path):
    sizes = {}
    for dtype in ("float32", "float16", "int8"):
        config = load_config(_file(tmp_path, GOOD | {"options": {"dtype": dtype}}))
        assert config.options == {"dtype": dtype}
        source = config.make_source()
        forecast = runner.forecast(config.make_plan(source), source, config.verb, config.make_model(),
                                   tiles_per_second=100, **config.options)
        sizes[dtype] = forecast.rows[0][-1]
    assert sizes["float16"] == sizes["float32"] // 2 and sizes["int8"] < 0.27 * sizes["float32"]
    for probabilities in ("uint8", "float32", None, False):
        options = {"targets": ["LULC"], "probabilities": probabilities}
        assert load_config(_file(tmp_path, GOOD | {"verb": "generate", "options": options})).options == options
