"""The ``xterramind`` command line."""

from __future__ import annotations

import argparse
import ast
import contextlib
import re
import sys
from pathlib import Path

import numpy as np

from .errors import (
    ForeignStoreError,
    InputError,
    Interrupted,
    MissingBandsError,
    OptionError,
    StoreError,
    WeightsUnavailableError,
    XterramindError,
)
from .models import get_config, list_models, load_model
from .models.registry import tokenizer_config
from .models.weights import locate_official
from .store import DEFAULT_ZARR_FORMAT, is_store, open_result
from .version import __version__


def _official_or_random(name: str, download: bool):
    """The official weights and LULC tokenizer if both are on this machine, else seeded random ones, said loudly.
    With ``download`` (``--download``) they are fetched if missing, and a failure is an error that says how to fix it:
    whoever asked for the official weights does not want random ones."""
    config = get_config(name)
    files = {}
    for part in (config, tokenizer_config("LULC", config.tokenizers)):
        try:
            files[part] = locate_official(part, download=download)
        except WeightsUnavailableError as error:
            what = str(error).splitlines()[0]  # the library's first line says what and why; its fixes are Python's
            if download:
                raise WeightsUnavailableError(f"{what}\n{_download_fix(part, name)}") from None
            official = name if config.official else "terramind_v1_tiny"
            banner = "!" * 78
            print(f"{banner}\nRUNNING ON RANDOM WEIGHTS: the results show the pipeline, not TerraMind's knowledge.\n"
                  f"{what}\nFor TerraMind's official weights: xterramind demo --model {official} --download (fetched "
                  f"once into the Hugging Face cache).\n{banner}", file=sys.stderr)
            return load_model(name, weights="random")
    weights, lulc = files.values()
    return load_model(name, weights=weights, tokenizers={"LULC": lulc})


def _download_fix(part, name: str) -> str:
    if part.hub_repo is None:
        return f"Leave out --download (random weights), or choose an official --model: {', '.join(list_models())}."
    return (f"Fix it one way: run where huggingface.co is reachable; or on a machine with internet run "
            f"`hf download {part.hub_repo} {part.filename}` and copy the Hugging Face cache (~/.cache/huggingface/hub) "
            f"here, or put {part.filename} in a folder named by $XTERRAMIND_WEIGHTS_DIR; or leave out --download "
            "to run on random weights.")


def demo(args: argparse.Namespace) -> None:
    """Embed the bundled real Sentinel-2 scene and generate its land cover into zarr; draw a quicklook."""
    from .data import open_sample
    from .quicklook import lulc_rgb, principal_rgb, random_weights_note, save_side_by_side, true_colour

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ForeignStoreError(f"--output {output} is a file; the demo writes a folder (two stores and a picture): give "
                         "another --output")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot make the --output folder {output}: {error.strerror}; give another --output") from None
    strangers = [name for name in ("embeddings.zarr", "lulc.zarr")
                 if (output / name).exists() and not is_store(output / name)]
    if strangers:
        raise ForeignStoreError(f"--output {output} holds {strangers}, which the demo did not write and will not replace: "
                         "give another --output")
    cube = open_sample()
    model = _official_or_random(args.model, args.download)
    products = {"embeddings.zarr": cube.terramind.embed(model), "lulc.zarr": cube.terramind.generate("LULC", model, seed=0)}
    print(f"{model!r}")
    print(f"input:  bundled Sentinel-2 scene, {cube.sizes['y']} x {cube.sizes['x']} px at 10 m, "
          f"modalities {products['embeddings.zarr'].attrs['modalities']}, {cube.rio.crs}")
    for name, product in products.items():
        if is_store(output / name):
            print(f"replacing the previous demo output {output / name}")
        _write(product, output / name, True, args.zarr_format,
               f"the demo was interrupted while writing {output / name}; run `xterramind demo` again (it starts over)")
    embeddings = open_result(output / "embeddings.zarr").values
    classes = open_result(output / "lulc.zarr")["LULC"].values
    pixels = cube.sel(band=["B04", "B03", "B02"]).values.astype(np.float32)
    picture = save_side_by_side(output / "quicklook.png", true_colour(*pixels), principal_rgb(embeddings), lulc_rgb(classes),
                                note=random_weights_note(products["lulc.zarr"].attrs))
    print(f"        {picture}: true colour | embeddings (first three principal components, 160 m) | generated land cover")
    print(f"open them with xterramind.open({str(output / 'lulc.zarr')!r}) (GDAL, QGIS: "
          f"ZARR:\"{output / 'lulc.zarr'}\":/LULC)")


def export(args: argparse.Namespace) -> None:
    """Pool an embeddings zarr store into GeoParquet cells with a search index."""
    import xarray as xr

    from .embed import dequantize
    from .retrieval import export as export_cells

    hint = ("export reads embeddings: the store of `xterramind demo` (xterramind-demo/embeddings.zarr) or of a run's "
            "verb: embed")
    try:
        result = dequantize(open_result(args.store, zone=args.zone))  # an int8 store: its vectors
    except StoreError as error:  # one about an area run's zones names its fix (--zone) already
        raise StoreError(str(error) if "zone" in str(error) else f"{error}; {hint}") from None
    names = list(result.data_vars) if isinstance(result, xr.Dataset) else [result.name]
    if args.variable != "embeddings" and args.variable not in names:  # named, and not there
        raise InputError(f"{args.store} has no variable {args.variable!r}: it has {names}; name one with "
                         f"--variable {names[0]}")
    embeddings = result.get(args.variable) if isinstance(result, xr.Dataset) else result
    if embeddings is None or embeddings.attrs.get("product") != "embeddings":
        held = result.attrs.get("product") or list(result.data_vars)
        raise InputError(f"{args.store} holds {held}, not embeddings; {hint} (or name the variable with --variable)")
    output, store = Path(args.output).resolve(), Path(args.store).resolve()
    if output.exists() and not output.is_dir():
        raise ForeignStoreError(f"{args.output} is a file; export writes a folder: give another OUTPUT")
    if output == store or output in store.parents:
        raise InputError(f"{args.output} holds the store being exported; give another OUTPUT")
    report = export_cells(embeddings, args.output, cell=args.cell, quantize="int8" if args.int8 else None,
                          index=args.index, overwrite=args.overwrite)
    print(report)


def predict(args: argparse.Namespace) -> None:
    """Run a fine-tuned model over a GeoTIFF, a zarr cube or a STAC query into a zarr store."""
    from .models import load_task

    task = load_task(args.config, args.checkpoint, device=args.device, precision=args.precision)
    cube = _open_input(args.input, task.inputs, args)
    options = {k: v for k, v in (("seed", args.seed), ("batch_size", args.batch_size), ("chunks", args.chunks),
                                 ("probabilities", args.probabilities)) if v is not None}
    try:
        result = cube.terramind.predict(task, **options)
    except MissingBandsError as error:  # its fix in Python (modalities=) is --bands here
        found = str(error).split(" Add them, or name", 1)[0]
        raise MissingBandsError(f"{found} Name the INPUT's bands in order with --bands, e.g. "
                                f"{_bands_example(task.inputs)}") from None
    print(f"{task!r}")
    _write(result, args.output, args.overwrite, args.zarr_format, f"predict was interrupted while writing "
           f"{args.output}; run the same command again to finish it (regions written are kept)")


def overviews(args: argparse.Namespace) -> None:
    """Build (or finish) a store's overview levels."""
    from .overviews import build

    print(build(args.store, zone=args.zone))


def stac(args: argparse.Namespace) -> None:
    """Save a store's STAC catalogue next to it (or in --output)."""
    from .catalog import write

    print(f"wrote   {write(args.store, args.output)}")


def cog(args: argparse.Namespace) -> None:
    """Export a store to Cloud-Optimized GeoTIFFs: one file (OUTPUT ending in .tif), or a folder of tiles."""
    from . import cog as cogs

    variable = args.variable or None
    if Path(args.output).suffix.lower() in (".tif", ".tiff"):
        if args.tile is not None:
            raise OptionError(f"--tile cuts a folder of tiles, but {args.output} is one file: give a folder as OUTPUT")
        written = cogs.write(open_result(args.store, zone=args.zone), args.output, variable=variable,
                             compress=args.compress, overwrite=args.overwrite)
    else:
        written = cogs.write_tiles(args.store, args.output, tile=args.tile or cogs.TILE, variable=variable,
                                   zone=args.zone, compress=args.compress, overwrite=args.overwrite)
    print(f"wrote   {len(written)} COG{'s' * (len(written) != 1)}, each with its STAC Item (.json): "
          + ", ".join(str(p) for p in written[:4]) + (f", ... ({len(written) - 4} more)" if len(written) > 4 else ""))


def _write(result, path, overwrite: bool, zarr_format: int, interrupted: str) -> None:
    """``to_zarr`` with the store it wrote said; Ctrl-C said as ``interrupted`` (how to go on)."""
    try:
        print(f"wrote   {result.terramind.to_zarr(path, overwrite=overwrite, zarr_format=zarr_format)}")
    except Interrupted:
        raise Interrupted(interrupted) from None


def _open_input(where: str, inputs, args: argparse.Namespace):
    """INPUT as a cube: a zarr store or GeoTIFF, else a STAC API URL or catalogue loaded over ``--bbox``."""
    from . import stac
    from .config import open_cube

    stac_like = where.startswith(("http://", "https://")) or where.endswith(".json")
    if not stac_like:
        if args.bbox or args.time:
            raise InputError("--bbox and --time are for a STAC INPUT (an API URL or a catalogue .json); "
                             f"{where} is read whole")
        try:
            cube = open_cube(Path(where))
        except XterramindError as error:
            raise InputError(str(error).replace("source: {cube: ...}: ", "INPUT: ")) from None
        return _named_bands(cube, where, inputs, args.bands)
    if args.bands:
        raise InputError("--bands names a GeoTIFF's or zarr cube's bands; a STAC INPUT's come named")
    if not args.bbox:
        raise InputError("a STAC INPUT needs the area: --bbox W S E N (degrees), and usually --time")
    if where.startswith(("http://", "https://")):
        try:
            from pystac_client import Client
        except ImportError:
            raise InputError("searching a STAC API needs pystac-client: pip install 'xterramind[stac]'") from None
        items = Client.open(where).search(collections=args.collections or ["sentinel-2-l2a"], bbox=args.bbox,
                                          datetime=args.time).item_collection()
    else:
        items = where
    return stac.load(items, [spec.name for spec in inputs], bbox=args.bbox, time=args.time, composite=args.composite)


def _named_bands(cube, where: str, inputs, bands: list[str] | None):
    """The cube with its bands named by ``--bands``; a raster without band descriptions needs them."""
    if "band" not in cube.dims:
        if bands:
            raise InputError(f"--bands names the bands of a cube with a band dimension; {where} has variables "
                             f"{list(cube.data_vars)}")
        return cube
    if bands:
        if len(bands) != cube.sizes["band"]:
            raise InputError(f"--bands names {len(bands)} bands; {where} has {cube.sizes['band']} bands")
        return cube.assign_coords(band=list(bands))
    if all(isinstance(name, (int, np.integer)) for name in cube.band.values):
        raise InputError(f"{where} does not name its bands (a raster without band descriptions): name them in order "
                         f"with --bands, e.g. {_bands_example(inputs)}")
    return cube


def _bands_example(inputs) -> str:
    """``--bands`` naming every band the model takes, input after input (one raster may carry them all)."""
    return (f"--bands {' '.join(band for spec in inputs for band in spec.bands)} "
            f"for {' then '.join(spec.name for spec in inputs)}")


def search(args: argparse.Namespace) -> None:
    """Print the cells most similar to a place."""
    from .retrieval import open as open_cells

    query = tuple(args.lonlat) if args.lonlat else tuple(args.bbox)
    hits = open_cells(args.export).similar(query, k=args.k)
    print(hits[["rank", "cell_id", "score", "lon", "lat", "time", "valid_fraction"]].to_string(index=False))


def run_config(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, plan and cost) the configuration file's verb over its area."""
    import logging

    from . import runner, store
    from .config import load_config

    config = load_config(args.config)
    source = config.make_source()
    plan = config.make_plan(source)
    if not args.dry_run:  # an output that holds something else fails now, not after the speed is measured
        store.check_run_root(config.output, {zone.name: zone.crs for zone in plan.zones}, resume=True,
                             overwrite=args.overwrite)
    try:  # a dry run given the speed needs only the model's architecture, not its weights
        model = config.make_model(stand_in=args.dry_run and args.tiles_per_second is not None)
        forecast = runner.forecast(plan, source, config.verb, model, tiles_per_second=args.tiles_per_second,
                                   **config.options)
    except WeightsUnavailableError as error:
        if not args.dry_run:
            raise
        raise WeightsUnavailableError(f"{str(error).rstrip('.')}; or give the dry run the model's speed, "
                                      "--tiles-per-second N, and it needs no weights") from None
    print(forecast)
    if args.dry_run:
        return 0
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger("xterramind")
    level, client = logger.level, None
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:  # the run's log on stderr while it runs (``main`` may be called from Python)
        if config.cluster:
            from distributed import Client

            client = Client(config.cluster)
        report = runner.run(plan, source, config.verb, model, config.output, client=client, in_flight=config.in_flight,
                            gpu=config.gpu, overwrite=args.overwrite, zarr_format=config.zarr_format, limit=args.limit,
                            overviews=config.overviews, **config.options)
    finally:
        if client is not None:
            client.close()
        logger.removeHandler(handler)
        logger.setLevel(level)
    print(report)
    return 1 if report.failed else 0


# -- errors in the command line's words ------------------------------------------------------------------

COMMANDS = {"embeddings.terramind.export()": "`xterramind export STORE OUTPUT`"}  # Python calls the CLI makes
SETTINGS_CALL = r"\bload_model\((?:[^()]*?, )?(?P<keywords>\w+=[^()]*)\)"  # a run file's model:, weights:, device:
VALUE = r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|[\w.:/+-]+"  # a Python literal in a message: 'a', [..], {..}, 3
# a keyword argument named as a fix; not one inside a call shown as code (``cube.isel(time=0)``, ``f(..., a=)``)
# nor a value the message quotes (``got top_k=-1``)
KEYWORD = r"(?<!\w\()(?<!, )(?<!got )(?P<pass>pass )?\b(?P<name>{names})(?:=(?P<value>{value})?|(?P<must> must\b))"


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, and that knows its options' flags by the keyword
    arguments they feed (what a library message names as its fix)."""

    def __init__(self, *args, **kwargs):
        self.flags: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.dest != "help":
            self.flags[action.dest] = max(action.option_strings, key=len)
        return action

    def error(self, message: str):
        self.exit(2, f"xterramind: error: {message} (usage: {' '.join(self.format_usage().split()[1:])})\n")


def in_cli_words(message: str, flags: dict[str, str], settings: dict[str, str | None] | None = None) -> str:
    """A library message with the fixes it names in Python in the command line's words: keyword arguments
    that a flag sets become the flag, those that a run file sets become the setting.

    Args:
        message: the message of an ``XterramindError``.
        flags: the flag of each keyword argument, e.g. ``{"overwrite": "--overwrite"}``.
        settings: the run file's settings: for each, the setting it sits in (``"source"``, ``"options"``) or
            None at the top.

    Example:
        >>> in_cli_words("out exists; pass overwrite=True to replace it", {"overwrite": "--overwrite"})
        'out exists; pass --overwrite to replace it'
        >>> in_cli_words("use weights='random'", {}, {"weights": None})
        'use weights: random'
    """
    import yaml

    settings = settings or {}
    for call, command in COMMANDS.items():
        message = message.replace(call, command)
    if settings:
        message = re.sub(SETTINGS_CALL, lambda call: call["keywords"], message)
    # one line: a list of fixes is said as a sentence
    message = " ".join(line.strip().removeprefix("- ") for line in message.splitlines() if line.strip())

    def spoken(match: re.Match) -> str:
        name, text, said, must = match["name"], match["value"], match["pass"] or "", match["must"] or ""
        value = text
        with contextlib.suppress(ValueError, SyntaxError, yaml.YAMLError):  # else said as written (``[...]``)
            value = ast.literal_eval(text)
            text = yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]
        if name in flags:
            return f"{said}{flags[name]}{'' if value is None or value is True else f' {value}'}{must}"
        if text is None:
            return f"{said}{name}:{must}"
        setting = f"{name}: {text}" if settings[name] is None else f"{settings[name]}: {{{name}: {text}}}"
        return ("set " if said else "") + setting

    names = "|".join(map(re.escape, sorted({*flags, *settings}, key=len, reverse=True)))
    return re.sub(KEYWORD.format(names=names, value=VALUE), spoken, message) if names else message


def _regions(text: str) -> int:
    """``--limit``, checked when parsed: a run measures the model's speed before it starts."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of regions, at least 1, got {text!r}")
    return int(text)


def _run_settings() -> dict[str, str | None]:
    """Where each setting a run file can hold sits: at the top, in ``source:`` or in ``options:``."""
    from .config import KEYS, SOURCE_KEYS
    from .runner import VERBS, verb_options

    options = {name: "options" for verb in VERBS for name in verb_options(verb)[1]}
    return {name: "source" for keys in SOURCE_KEYS.values() for name in keys} | options | dict.fromkeys(KEYS)


EXAMPLES = """\
start here:
  xterramind demo                  embed the bundled Sentinel-2 scene and map its land cover (zarr + PNG)
  xterramind demo --download       the same with TerraMind's official weights (fetched once)

embeddings search:
  xterramind export xterramind-demo/embeddings.zarr cells
  xterramind search cells --lonlat -75.62 37.67 -k 5

a model fine-tuned with TerraTorch:
  xterramind predict config.yaml best.ckpt scene.tif floods.zarr

an area on a Dask cluster:
  xterramind run area.yaml --dry-run      zones, regions, tiles, output size, device-hours
  xterramind run area.yaml                run it (again, to finish an interrupted run)

In Python: import xterramind; help(xterramind). Notebooks: notebooks/quickstart.ipynb.
"""

PREDICT_EXAMPLE = """\
examples:
  xterramind predict config.yaml best.ckpt scene.tif floods.zarr
  xterramind predict config.yaml best.ckpt https://earth-search.aws.element84.com/v1 crops.zarr \\
      --bbox 9.0 45.0 9.2 45.2 --time 2024-06-01/2024-08-31 --composite median
"""

COG_EXAMPLE = """\
examples:
  xterramind cog xterramind-demo/lulc.zarr lulc.tif            one COG, with the class colours and names
  xterramind cog europe.zarr europe-cogs/ --zone utm32n        8192 px tiles of one zone of an area run
"""

RUN_EXAMPLE = """\
a minimal area.yaml:
  area: [9.0, 45.0, 9.5, 45.5]            # west, south, east, north (degrees), or a GeoJSON file
  source: {stac: https://earth-search.aws.element84.com/v1, collections: [sentinel-2-l2a],
           modalities: [S2L2A], time: 2024-06-01/2024-08-31, composite: median}
  verb: embed                             # embed | generate | tokenize | detokenize | predict
  model: terramind_v1_base
  output: area.zarr
  cluster: tcp://scheduler:8786           # leave out for a cluster on this machine

Every key: python -c "import xterramind.config; help(xterramind.config)".
"""


def main(argv: list[str] | None = None) -> int:
    """The ``xterramind`` command: parse ``argv`` and run the subcommand; 1 on an xterramind error (printed).

    Example:
        >>> main(["models"])
        terramind_v1_tiny
        ...
    """
    parser = Parser(prog="xterramind", formatter_class=argparse.RawDescriptionHelpFormatter,
                    description="TerraMind, the any-to-any Earth-observation foundation model, over satellite "
                    "datacubes of any size.", epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"xterramind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    subcommands: dict[str, Parser] = {}

    def command(name: str, summary: str, epilog: str | None = None) -> Parser:
        subcommands[name] = commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        return subcommands[name]

    run_demo = command("demo", "embed the bundled Sentinel-2 scene and generate its land cover, into zarr + a PNG")
    run_demo.add_argument("--model", default="terramind_v1_tiny", choices=list_models(include_micro=True),
                          metavar="NAME", help="a name from `xterramind models` (default: terramind_v1_tiny)")
    run_demo.add_argument("--output", default="xterramind-demo", help="folder for the stores and the picture "
                          "(default: xterramind-demo)")
    run_demo.add_argument("--zarr-format", type=int, default=DEFAULT_ZARR_FORMAT, choices=(2, 3),
                          help="2 (default: every GDAL from 3.6, QGIS) or 3 (GDAL 3.11 or newer)")
    run_demo.add_argument("--download", action="store_true", help="use TerraMind's official weights, downloading "
                          "them if missing (an error if they cannot be had); without it: the official weights if on "
                          "this machine, else random ones, said loudly")
    run_demo.set_defaults(run=demo)
    command("models", "list the model names").set_defaults(run=lambda _: print("\n".join(list_models())))
    run_export = command("export", "pool an embeddings zarr store into GeoParquet cells and a search index")
    run_export.add_argument("store", help="a zarr store written by embeddings.terramind.to_zarr()")
    run_export.add_argument("output", help="the folder to write (GeoParquet parts, _export.json, the index)")
    run_export.add_argument("--cell", type=int, default=224, help="cell side in pixels, a multiple of 16 (default 224)")
    run_export.add_argument("--int8", action="store_true", help="store int8 vectors as the zarr store's "
                            "int8 does (codes of the unit vector, its length as embeddings_scale)")
    run_export.add_argument("--index", default="auto", choices=("auto", "exact", "ivf"), help="nearest-neighbour "
                            "index (default auto: exact up to 100,000 cells, IVF beyond)")
    run_export.add_argument("--variable", default="embeddings", help="the store's embeddings variable")
    run_export.add_argument("--zone", help="the zone to export from an area run's store, e.g. utm32n")
    run_export.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    run_export.set_defaults(run=export)
    run_search = command("search", "find the cells most similar to a place")
    run_search.add_argument("export", help="a folder written by `xterramind export`")
    where = run_search.add_mutually_exclusive_group(required=True)
    where.add_argument("--lonlat", nargs=2, type=float, metavar=("LON", "LAT"), help="the cell at this point")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="the mean of these cells")
    run_search.add_argument("-k", type=int, default=10, help="how many hits (default 10)")
    run_search.set_defaults(run=search)
    run_predict = command("predict", "run a model fine-tuned with TerraTorch over a GeoTIFF, a zarr cube or a STAC "
                          "query, into a zarr store", PREDICT_EXAMPLE)
    run_predict.add_argument("config", help="the TerraTorch fine-tuning config (the YAML of `terratorch fit -c`)")
    run_predict.add_argument("checkpoint", help="its checkpoint (.ckpt) or state dict")
    run_predict.add_argument("input", help="a GeoTIFF, a zarr store, or a STAC API URL / catalogue .json (with --bbox)")
    run_predict.add_argument("output", help="the zarr store to write (resumable: run again to finish)")
    run_predict.add_argument("--bands", nargs="+", metavar="NAME", help="the INPUT's band names in order, for a "
                             "raster without band descriptions, e.g. --bands B01 B02 ... B12")
    run_predict.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                             help="a STAC INPUT's area in degrees")
    run_predict.add_argument("--time", help="a STAC INPUT's dates, e.g. 2024-06-01/2024-08-31")
    run_predict.add_argument("--collections", nargs="+", help="a STAC API's collections (default sentinel-2-l2a)")
    run_predict.add_argument("--composite", choices=("median",), help="a cloud-masked median over a STAC INPUT's dates")
    run_predict.add_argument("--probabilities", choices=("float32", "uint8"), help="also store the blended class "
                             "probabilities (segmentation)")
    run_predict.add_argument("--seed", type=int, help="a TiM model's seed (default 0)")
    run_predict.add_argument("--batch-size", dest="batch_size", type=int, help="tiles per forward pass")
    run_predict.add_argument("--chunks", type=int, help="output chunk (region) side in tokens")
    run_predict.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    run_predict.add_argument("--precision", default="auto", help="auto (default), fp32, bf16 or fp16")
    run_predict.add_argument("--zarr-format", type=int, default=DEFAULT_ZARR_FORMAT, choices=(2, 3),
                             help="2 (default: every GDAL from 3.6, QGIS) or 3 (GDAL 3.11 or newer)")
    run_predict.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    run_predict.set_defaults(run=predict)
    run_overviews = command("overviews", "add coarser levels to a store, for viewers (land cover by mode, images and "
                            "embeddings by mean); resumable")
    run_overviews.add_argument("store", help="a zarr store written by xterramind (to_zarr, predict, run)")
    run_overviews.add_argument("--zone", help="only this zone of an area run's store, e.g. utm32n (default: all)")
    run_overviews.set_defaults(run=overviews)
    run_stac = command("stac", "describe a store in a static STAC catalogue (an Item; a Collection of one Item per "
                       "zone for an area run), for STAC browsers, pystac and odc-stac")
    run_stac.add_argument("store", help="a zarr store written by xterramind (to_zarr, predict, run)")
    run_stac.add_argument("--output", help="the catalogue's folder (default: STORE.stac next to the store)")
    run_stac.set_defaults(run=stac)
    run_cog = command("cog", "export a store to Cloud-Optimized GeoTIFFs: one file, or for an area one per zone per "
                      "tile", COG_EXAMPLE)
    run_cog.add_argument("store", help="a zarr store written by xterramind (to_zarr, predict, run)")
    run_cog.add_argument("output", help="a .tif file, or a folder for tiles ({zone}_{variable}_r{row}_c{col}.tif)")
    run_cog.add_argument("--variable", nargs="+", metavar="NAME", help="the variables to export (default: the main "
                         "one: LULC, classes, prediction or embeddings)")
    run_cog.add_argument("--zone", help="the zone of an area run's store, e.g. utm32n (a folder OUTPUT: default all)")
    run_cog.add_argument("--tile", type=int, help="tile side in px for a folder OUTPUT (default 8192)")
    run_cog.add_argument("--compress", default="deflate", choices=("deflate", "zstd"),
                         help="deflate (default: every reader) or zstd")
    run_cog.add_argument("--overwrite", action="store_true", help="replace files already there")
    run_cog.set_defaults(run=cog)
    run_area = command("run", "run a verb over an area on a Dask cluster, from a configuration file", RUN_EXAMPLE)
    run_area.add_argument("config", help="a YAML file: area, source, verb, model, output, cluster")
    run_area.add_argument("--dry-run", action="store_true", help="print the zones, regions, tiles, output size and "
                          "model time, and stop")
    run_area.add_argument("--limit", type=_regions, help="compute at most this many regions (a trial)")
    run_area.add_argument("--tiles-per-second", type=float, help="the model's speed for the time estimate "
                          "(default: measured now on this machine)")
    run_area.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    run_area.set_defaults(run=run_config)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except XterramindError as error:  # a mistake, said with its fix; anything else is a bug and shows its traceback
        settings = _run_settings() if args.command == "run" else None
        print(f"xterramind: error: {in_cli_words(str(error), subcommands[args.command].flags, settings)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C: how far it got (a write's Interrupted says), without a traceback
        said = str(stop).replace("the same call", "the same command") if isinstance(stop, Interrupted) else ""
        print(f"xterramind: {said or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
