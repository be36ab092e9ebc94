"""``xterramind`` given ordinary mistakes: every subcommand exits with one line naming the fix in the command
line's own words (a flag, a setting of the run file), never a traceback; the dry run's table and weights."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
import zarr

import xterramind
from xterramind import cli, retrieval, runner, runtime
from xterramind.data import SAMPLE_STACK
from xterramind.errors import ForeignStoreError

ROOT = Path(__file__).parents[1]
AREA = [9.0, 45.0, 9.12, 45.08]


def _run_file(folder: Path, name: str, **settings) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({"area": AREA, "source": {"synthetic": {"modalities": ["S2L2A"]}},
                                    "model": "terramind_micro", "weights": "random", "device": "cpu",
                                    "output": "out.zarr", "region": 24} | settings))
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory, micro, cube):
    """The paths the mistakes are made with: stores of embeddings and of tokens, a cell export, a plain folder
    and file, and run files."""
    folder = tmp_path_factory.mktemp("cli")
    small = cube.isel(y=slice(0, 224), x=slice(0, 224))
    small.terramind.embed(micro).terramind.to_zarr(folder / "embeddings.zarr", progress=False)
    small.terramind.tokenize("S2L2A", micro).terramind.to_zarr(folder / "tokens.zarr", progress=False)
    assert cli.main(["export", str(folder / "embeddings.zarr"), str(folder / "cells")]) == 0
    (folder / "plain").mkdir()
    (folder / "plain" / "mine.txt").write_text("mine")
    (folder / "file.txt").write_text("mine")
    (folder / "demo" / "embeddings.zarr").mkdir(parents=True)  # a folder of the user's where the demo writes
    (folder / "demo" / "embeddings.zarr" / "mine.txt").write_text("mine")
    (folder / "bad.yaml").write_text("area: [1, 2\n")
    zarr.open_group(str(folder / "run.zarr"), mode="w").attrs["xterramind_run"] = {"zones": {"utm32n": "EPSG:32632",
                                                                                       "utm33n": "EPSG:32633"}}
    places = {"store": folder / "embeddings.zarr", "tokens": folder / "tokens.zarr", "cells": folder / "cells",
              "folder": folder / "plain", "file": folder / "file.txt", "missing": folder / "nothere.zarr",
              "new": folder / "new", "bad": folder / "bad.yaml", "run": folder / "run.zarr", "demo": folder / "demo"}
    for name, settings in {"generate": {"verb": "generate"}, "tokenize": {"verb": "tokenize"},
                           "option": {"options": {"batchsize": 3}}, "planned": {"options": {"tile_size": 3}},
                           "gpu": {"gpu": "maybe"}, "flight": {"in_flight": 0}, "verb": {"verb": "paint"},
                           "model": {"model": "terramind_v9"}, "auto": {"weights": "auto"},
                           "taken": {"output": str(folder / "plain")}, "ok": {},
                           "nocube": {"source": {"cube": str(folder / "plain")}}}.items():
        places[name] = _run_file(folder, f"{name}.yaml", **settings)
    return places


MISTAKES = [  # arguments, exit code, what the one line must say
    ("export {missing} {new}", 1, ["there is no store", "`xterramind demo`"]),
    ("export {folder} {new}", 1, ["not a zarr store", "`xterramind demo`"]),
    ("export {file} {new}", 1, ["not a zarr store"]),
    ("export {tokens} {new}", 1, ["holds tokens, not embeddings", "--variable"]),
    ("export {store} {cells}", 1, ["exists", "--overwrite"]),
    ("export {store} {file}", 1, ["is a file"]),
    ("export {store} {store}/.. --overwrite", 1, ["holds the store being exported"]),
    ("export {run} {new}", 1, ["area run with zones", "--zone utm32n"]),
    ("export {store} {new} --zone utm32n", 1, ["not an area run", "leave out --zone"]),
    ("export {store} {new} --cell 100", 1, ["--cell must be a positive multiple"]),
    ("export {store} {new} --cell -16", 1, ["--cell must be a positive multiple"]),
    ("export {store} {new} --cell x", 2, ["argument --cell"]),
    ("search {missing} --lonlat 0 0", 1, ["not an xterramind cell export", "`xterramind export"]),
    ("search {store} --lonlat 0 0", 1, ["`xterramind export"]),
    ("search {cells} --lonlat -75.62 37.67 -k 0", 1, ["-k must be at least 1"]),
    ("search {cells}", 2, ["--lonlat", "--bbox"]),
    ("demo --output {file}", 1, ["is a file", "--output"]),
    ("demo --output {demo}", 1, ["did not write and will not replace", "--output"]),
    ("export {store} {new} --variable nope", 1, ["no variable 'nope'", "--variable embeddings"]),
    ("demo --output {file}/inside", 1, ["--output"]),
    ("demo --zarr-format 4", 2, ["--zarr-format"]),
    ("models --all", 2, ["unrecognized"]),
    ("run {missing}", 1, ["cannot read the run configuration"]),
    ("run {folder}", 1, ["cannot read the run configuration"]),
    ("run {bad} --dry-run", 1, ["not valid YAML"]),
    ("run {generate} --dry-run", 1, ["verb: generate needs options: {targets: [LULC]}"]),
    ("run {tokenize} --dry-run", 1, ["verb: tokenize needs options: {modality: S2L2A}"]),
    ("run {option} --dry-run", 1, ["options: unknown ['batchsize']", "batch_size"]),
    ("run {planned} --dry-run", 1, ["belong to the plan", "region:"]),
    ("run {gpu} --dry-run", 1, ["gpu: must be one of auto, true, false"]),
    ("run {flight} --dry-run", 1, ["in_flight: must be"]),
    ("run {verb} --dry-run", 1, [f"verb: must be one of {', '.join(runner.VERBS)}, got 'paint'"]),
    ("run {model} --dry-run", 1, ["model: unknown model"]),
    ("run {nocube} --dry-run", 1, ["source: {cube: ...}", "neither a zarr store nor a raster file"]),
    ("run {auto} --dry-run", 1, ["weights: random", "--tiles-per-second N"]),
    ("run {ok} --dry-run --tiles-per-second 0", 1, ["--tiles-per-second must be a positive number"]),
    ("run {ok} --limit 0", 2, ["argument --limit"]),
    ("overviews {tokens}", 1, ["tokens", "detokenize"]),
    ("overviews {missing}", 1, ["no store at"]),
    ("overviews {run} --zone utm31n", 1, ["utm32n"]),
    ("cog {missing} {new}.tif", 1, ["no store at"]),
    ("cog {store} {new}.tif --tile 256", 1, ["--tile", "give a folder as OUTPUT"]),
    ("cog {store} {new}.tif --variable nope", 1, ["no variable", "with --variable"]),
    ("cog {run} {new}.tif", 1, ["--zone utm32n"]),
    ("cog {store} {file}", 1, ["file.txt"]),
    ("stac {missing}", 1, ["nothere.zarr"]),
    ("stac {folder}", 1, ["plain"]),
    ("stac {store} --output {folder}", 1, ["holds other files"]),
    ("run {taken} --tiles-per-second 100", 1, ["is not an xterramind run store", "--overwrite"]),
]


def _one_line_error(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    printed = capsys.readouterr().err
    lines = printed.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xterramind: error: ") and "Traceback" not in printed, printed
    return code, lines[0]


@pytest.mark.parametrize(("arguments", "code", "says"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_gets_one_line_with_the_fix_in_the_command_line_s_words(places, capsys, arguments, code, says):
    loads = sum(runtime.loads.values())
    got, line = _one_line_error(capsys, [part.format(**places) for part in arguments.split()])
    assert got == code, line
    assert all(text in line for text in says), line
    assert not re.search(r"\w=|\(\)|\[Errno", line), line  # no Python: keywords (overwrite=True), calls, errno
    if arguments.startswith("run") and "verb" in line:
        assert sum(runtime.loads.values()) == loads  # found before any model was built
    assert (places["folder"] / "mine.txt").read_text() == "mine" and places["file"].read_text() == "mine"


def test_the_console_script_gives_the_same_line(places, tmp_path):
    """The installed ``xterramind`` command, not only ``main``: exit status and the bare line."""
    script = Path(sys.executable).with_name("xterramind")
    environment = os.environ | {"PYTHONPATH": str(ROOT)}  # the code under test, wherever the package is installed
    for arguments, fix in [(["export", str(places["missing"]), "c4"], "`xterramind demo`"),
                           (["run", str(places["generate"]), "--dry-run"], "options: {targets: [LULC]}")]:
        done = subprocess.run([str(script), *arguments], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=environment)
        assert done.returncode == 1 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("xterramind: error: ") and fix in done.stderr


def test_a_dry_run_given_the_speed_needs_no_weights_and_names_the_crs_shortly(tmp_path, capsys):
    """terramind_micro has no official checkpoint: with ``weights: auto`` only a run that needs the weights fails.
    A cube's grid comes with a WKT CRS; the table shows its EPSG code."""
    config = tmp_path / "cube.yaml"
    config.write_text(yaml.safe_dump({"area": [-75.64, 37.65, -75.6, 37.69], "source": {"cube": str(SAMPLE_STACK)},
                                      "model": "terramind_micro", "weights": "auto", "output": "cube.zarr",
                                      "region": 24}))
    assert cli.main(["run", str(config), "--dry-run", "--tiles-per-second", "5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["utm18n", "EPSG:32618"] and "[" not in "\n".join(table)
    assert table[-1].endswith("at 5.0 tiles/s (given)")
    assert not (tmp_path / "cube.zarr").exists()


def test_library_fixes_are_said_as_flags_and_settings():
    flags = {"overwrite": "--overwrite", "zone": "--zone", "cell": "--cell"}
    for python, spoken in [("x exists; pass overwrite=True to replace it", "x exists; pass --overwrite to replace it"),
                           ("open one with zone=, e.g. zone='utm32n'", "open one with --zone, e.g. --zone utm32n"),
                           ("no cell, or cell must be 16", "no cell, or --cell must be 16")]:
        assert cli.in_cli_words(python, flags) == spoken
    settings = {"composite": "source", "gpu": None, "weights": None, "time": "source", "top_k": "options"}
    assert (cli.in_cli_words("use a composite (composite='median'), not cube.isel(time=0)", {}, settings)
            == "use a composite (source: {composite: median}), not cube.isel(time=0)")
    assert cli.in_cli_words("pass gpu=False; got top_k=-1", {}, settings) == "set gpu: false; got top_k=-1"
    assert (cli.in_cli_words("Fix it one way:\n  - pass the file: load_model('tiny', weights='/a/t.pt');\n"
                             "  - or weights='random'.", {}, settings)
            == "Fix it one way: pass the file: weights: /a/t.pt; or weights: random.")


def test_ctrl_c_says_how_far_it_got_in_the_command_line_s_words(monkeypatch, capsys):
    from xterramind import cli
    from xterramind.errors import Interrupted

    def interrupted(args):
        raise Interrupted("writing lulc.zarr: interrupted after 3 of 9 regions; run the same call again to resume")

    monkeypatch.setattr(cli, "run_config", interrupted)
    assert cli.main(["run", "area.yaml"]) == 130
    err = capsys.readouterr().err
    assert err == ("xterramind: writing lulc.zarr: interrupted after 3 of 9 regions; run the same command again "
                   "to resume\n")
    monkeypatch.setattr(cli, "run_config", lambda args: (_ for _ in ()).throw(KeyboardInterrupt))
    assert cli.main(["run", "area.yaml"]) == 130
    assert capsys.readouterr().err == "xterramind: interrupted\n"


def test_a_run_whose_output_holds_something_else_fails_before_the_speed_is_measured(places, capsys):
    loads = sum(runtime.loads.values())
    code, line = _one_line_error(capsys, ["run", str(places["taken"])])
    assert code == 1 and "is not an xterramind run store" in line and "--overwrite" in line
    assert sum(runtime.loads.values()) == loads  # no model built, nothing measured
    assert (places["folder"] / "mine.txt").read_text() == "mine"


def test_command_line_export_and_search(sample_embeddings, tmp_path, capsys):
    sample_embeddings.to_dataset().to_zarr(tmp_path / "emb.zarr", zarr_format=2)
    assert cli.main(["export", str(tmp_path / "emb.zarr"), str(tmp_path / "cells"), "--cell", "32"]) == 0
    assert "225 cells" in capsys.readouterr().out
    row = retrieval.open(tmp_path / "cells").rows([40]).iloc[0]
    assert cli.main(["search", str(tmp_path / "cells"), "--lonlat", str(row["lon"]), str(row["lat"]), "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert row["cell_id"] in printed.splitlines()[1] and "score" in printed
    assert cli.main(["search", str(tmp_path / "nowhere"), "--lonlat", "0", "0"]) == 1
    assert "not an xterramind cell export" in capsys.readouterr().err


def test_an_output_that_holds_something_else_is_a_foreign_store_error(places, monkeypatch):
    """What ``main`` prints as one line (above) is a ForeignStoreError for a Python caller of the subcommands."""
    import argparse

    for command, arguments in [(cli.demo, {"output": str(places["file"]), "model": "terramind_micro"}),
                               (cli.demo, {"output": str(places["demo"]), "model": "terramind_micro"}),
                               (cli.export, {"store": str(places["store"]), "output": str(places["file"]),
                                             "variable": "embeddings", "zone": None})]:
        with pytest.raises(ForeignStoreError):
            command(argparse.Namespace(**arguments))
    assert places["file"].read_text() == "mine" and (places["demo"] / "embeddings.zarr" / "mine.txt").exists()


@pytest.fixture(scope="module")
def flood_task(tmp_path_factory):
    """A TerraTorch-style config and checkpoint (micro backbone, seeded weights) and the sample as a GeoTIFF with
    named bands and as a zarr cube."""
    from tests.tasks import task_config, write_task

    folder = tmp_path_factory.mktemp("predict")
    config, checkpoint = write_task(folder, task_config(
        classes=2, class_names=["others", "flood"], decoder="FCNDecoder", decoder_args={"channels": 8, "num_convs": 4},
        necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}]))
    cube = xterramind.open_sample()
    cube.assign_attrs(long_name=tuple(cube.band.values)).rio.to_raster(folder / "scene.tif")
    cube.drop_attrs().rio.to_raster(folder / "unnamed.tif")
    cube.to_dataset(name="reflectance").to_zarr(folder / "scene.zarr", zarr_format=2, consolidated=True)
    return {"config": config, "checkpoint": checkpoint, "folder": folder, "cube": cube}


def test_predict_maps_a_geotiff_and_a_zarr_cube_as_the_accessor_does(flood_task, capsys):
    paths = flood_task
    task = xterramind.load_task(paths["config"], paths["checkpoint"], device="cpu")
    expected = paths["cube"].terramind.predict(task).compute()
    for source, output in [("scene.tif", "from_tif.zarr"), ("scene.zarr", "from_zarr.zarr")]:
        argv = ["predict", str(paths["config"]), str(paths["checkpoint"]), str(paths["folder"] / source),
                str(paths["folder"] / output), "--device", "cpu", "--probabilities", "uint8"]
        assert cli.main(argv) == 0, capsys.readouterr().err
        assert f"wrote   {paths['folder'] / output}" in capsys.readouterr().out
        with rasterio.open(f'ZARR:"{paths["folder"] / output}":/classes') as dataset:  # GDAL, as QGIS reads it
            assert dataset.crs == expected.rio.crs and dataset.transform == expected.rio.transform()
            np.testing.assert_array_equal(dataset.read(1), expected.classes.values)
        stored = xterramind.open(paths["folder"] / output)
        assert stored.classes.attrs["flag_meanings"] == "others flood" and "class_probability" in stored
    again = cli.main(["predict", str(paths["config"]), str(paths["checkpoint"]), str(paths["folder"] / "scene.tif"),
                      str(paths["folder"] / "from_tif.zarr"), "--device", "cpu", "--probabilities", "uint8"])
    assert again == 0  # the same command again: the store is complete, nothing to redo


PREDICT_MISTAKES = [  # arguments after `predict`, exit code, what the one line must say
    ("{config} {folder}/missing.ckpt {folder}/scene.tif {folder}/o1.zarr", 1, ["checkpoint file not found"]),
    ("{folder}/scene.tif {checkpoint} {folder}/scene.tif {folder}/o2.zarr", 1, ["config"]),
    ("{config} {checkpoint} {folder}/nothere.tif {folder}/o3.zarr", 1, ["INPUT: no cube at"]),
    ("{config} {checkpoint} {folder}/unnamed.tif {folder}/o4.zarr", 1, ["does not name its bands", "--bands B01"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o12.zarr --bands B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 "
     "B10 B11 X12", 1, ["S2L1C needs bands", "missing ['B12']"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o5.zarr --bbox 0 0 1 1", 1, ["--bbox", "STAC INPUT"]),
    ("{config} {checkpoint} {folder}/cat.json {folder}/o6.zarr", 1, ["--bbox W S E N"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o7.zarr --batch-size 0", 1, ["--batch-size"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o8.zarr --chunks 0", 1, ["--chunks"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o9.zarr --device tpu", 1, ["unknown device 'tpu'"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o10.zarr --bands B01 B02", 1, ["--bands names 2", "13 bands"]),
    ("{config} {checkpoint} {folder}/scene.tif {folder}/o11.zarr --probabilities int8", 2, ["--probabilities"]),
]


@pytest.mark.parametrize(("arguments", "code", "says"), PREDICT_MISTAKES, ids=[m[0] for m in PREDICT_MISTAKES])
def test_a_predict_mistake_gets_one_line_in_the_command_line_s_words(flood_task, capsys, arguments, code, says):
    places = {k: v for k, v in flood_task.items() if k != "cube"}
    got, line = _one_line_error(capsys, ["predict", *[part.format(**places) for part in arguments.split()]])
    assert got == code, line
    assert all(text in line for text in says), line
    assert not re.search(r"\w=|\(\)|\[Errno", line), line
    assert not list(flood_task["folder"].glob("o*.zarr"))  # nothing written


def test_the_bands_hint_of_a_multimodal_model_names_every_input_s_bands(tmp_path, capsys):
    """One raster may carry a model's S2 and S1 bands: the example ``--bands`` lists them all, in the inputs'
    order, whether the raster names none of its bands or lacks a modality's."""
    from tests.tasks import task_config, write_task
    from xterramind.models.registry import resolve_modality

    config, checkpoint = write_task(tmp_path, task_config(
        modalities=("S2L2A", "S1GRD"), decoder="FCNDecoder", decoder_args={"channels": 8, "num_convs": 1},
        necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}]))
    cube = xterramind.open_sample()
    cube.assign_attrs(long_name=tuple(cube.band.values)).rio.to_raster(tmp_path / "s2.tif")
    cube.drop_attrs().rio.to_raster(tmp_path / "unnamed.tif")
    every = " ".join([*resolve_modality("S2L2A").bands, *resolve_modality("S1GRD").bands])
    for raster, says in (("unnamed.tif", "does not name its bands"), ("s2.tif", "S1GRD needs bands")):
        code, line = _one_line_error(capsys, ["predict", str(config), str(checkpoint), str(tmp_path / raster),
                                              str(tmp_path / "out.zarr"), "--device", "cpu"])
        assert code == 1 and says in line, line
        assert f"--bands {every} for S2L2A then S1GRD" in line, line
    assert not (tmp_path / "out.zarr").exists()


def test_command_line_overviews_and_cogs_of_a_store(cube, tmp_path, capsys):
    """``xterramind overviews`` then ``xterramind cog``: one file with its overviews, or a folder of tiles that
    together hold the store."""
    import rasterio

    store = tmp_path / "emb.zarr"  # the scene's reflectance as floats: an image product
    cube.isel(band=slice(0, 3)).astype("float32").chunk({"y": 160, "x": 160}).terramind.to_zarr(store, progress=False)
    assert cli.main(["overviews", str(store)]) == 0
    assert "2 overview levels" in capsys.readouterr().out
    assert cli.main(["cog", str(store), str(tmp_path / "emb.tif")]) == 0
    assert "wrote   1 COG" in capsys.readouterr().out
    stored = xterramind.open(store)
    with rasterio.open(tmp_path / "emb.tif") as single:
        assert single.crs == stored.rio.crs and single.transform == stored.rio.transform()
        np.testing.assert_array_equal(single.read(), stored.values)
    assert cli.main(["cog", str(store), str(tmp_path / "tiles"), "--tile", "256"]) == 0
    tiles = sorted((tmp_path / "tiles").glob("*.tif"))
    assert len(tiles) == 4 and "wrote   4 COGs" in capsys.readouterr().out
    assert cli.main(["stac", str(store)]) == 0
    root = tmp_path / "emb.zarr.stac" / "catalog.json"
    assert f"wrote   {root}" in capsys.readouterr().out
    np.testing.assert_array_equal(xterramind.stac.load(root).values, stored.values)
    mosaic = np.zeros(stored.shape, stored.dtype)
    for tile in tiles:
        with rasterio.open(tile) as part:
            col, row = (round(v) for v in ~stored.rio.transform() * (part.transform.c, part.transform.f))
            mosaic[:, row:row + part.height, col:col + part.width] = part.read()
    np.testing.assert_array_equal(mosaic, stored.values)
