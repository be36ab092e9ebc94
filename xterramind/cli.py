"""The ``xterramind`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__, list_models, load_model
from .errors import InputError, WeightsUnavailableError, XterramindError
from .models import get_config
from .models.registry import tokenizer_config
from .models.weights import locate_official


def _official_or_random(name: str, download: bool):
    """The official weights and LULC tokenizer if both can be had, else seeded random ones, said loudly."""
    config = get_config(name)
    try:
        weights = locate_official(config, download=download)
        lulc = locate_official(tokenizer_config("LULC", config.tokenizers), download=download)
        return load_model(name, weights=weights, tokenizers={"LULC": lulc})
    except WeightsUnavailableError as error:
        banner = "!" * 78
        print(f"{banner}\nRUNNING ON RANDOM WEIGHTS: the results show the pipeline, not TerraMind's knowledge.\n"
              f"{error}\n{banner}", file=sys.stderr)
        return load_model(name, weights="random")


def demo(args: argparse.Namespace) -> None:
    """Embed the bundled real Sentinel-2 scene and generate its land cover into zarr; draw a quicklook."""
    import xarray as xr

    from .data import open_sample
    from .quicklook import lulc_rgb, principal_rgb, save_side_by_side, true_colour

    cube = open_sample()
    model = _official_or_random(args.model, args.download)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    products = {"embeddings.zarr": cube.terramind.embed(model), "lulc.zarr": cube.terramind.generate("LULC", model, seed=0)}
    print(f"{model!r}")
    print(f"input:  bundled Sentinel-2 scene, {cube.sizes['y']} x {cube.sizes['x']} px at 10 m, "
          f"modalities {products['embeddings.zarr'].attrs['modalities']}, {cube.rio.crs}")
    for name, product in products.items():
        if (output / name).exists():
            print(f"replacing the previous demo output {output / name}")
        print(f"wrote   {product.terramind.to_zarr(output / name, overwrite=True, zarr_format=args.zarr_format)}")
    embeddings = xr.open_zarr(output / "embeddings.zarr")["embeddings"].values
    classes = xr.open_zarr(output / "lulc.zarr")["LULC"].values
    pixels = cube.sel(band=["B04", "B03", "B02"]).values.astype(np.float32)
    picture = save_side_by_side(output / "quicklook.png", true_colour(*pixels), principal_rgb(embeddings), lulc_rgb(classes))
    print(f"        {picture}: true colour | embeddings (first three principal components, 160 m) | generated land cover")
    print(f"open them with xarray.open_zarr({str(output / 'lulc.zarr')!r})")


def export(args: argparse.Namespace) -> None:
    """Pool an embeddings zarr store into GeoParquet cells with a search index."""
    import xarray as xr

    from .retrieval import export as export_cells

    store = xr.open_zarr(args.store, decode_coords="all")
    if args.variable not in store:
        raise InputError(f"{args.store} has no variable {args.variable!r}; it has {list(store.data_vars)}")
    report = export_cells(store[args.variable], args.output, cell=args.cell, quantize="int8" if args.int8 else None,
                          index=args.index, overwrite=args.overwrite)
    print(report)


def search(args: argparse.Namespace) -> None:
    """Print the cells most similar to a place."""
    from .retrieval import open as open_cells

    query = tuple(args.lonlat) if args.lonlat else tuple(args.bbox)
    hits = open_cells(args.export).similar(query, k=args.k)
    print(hits[["rank", "cell_id", "score", "lon", "lat", "time", "valid_fraction"]].to_string(index=False))


def run(args: argparse.Namespace) -> int:
    """Run (or with --dry-run, plan and cost) the configuration file's verb over its area."""
    import logging

    from . import runner
    from .config import load_config

    config = load_config(args.config)
    source = config.make_source()
    plan = config.make_plan(source)
    model = config.make_model()
    forecast = runner.forecast(plan, source, config.verb, model, tiles_per_second=args.tiles_per_second, **config.options)
    print(forecast)
    if args.dry_run:
        return 0
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("xterramind").addHandler(handler)
    logging.getLogger("xterramind").setLevel(logging.INFO)
    client = None
    if config.cluster:
        from distributed import Client

        client = Client(config.cluster)
    try:
        report = runner.run(plan, source, config.verb, model, config.output, client=client, in_flight=config.in_flight,
                            gpu=config.gpu, overwrite=args.overwrite, zarr_format=config.zarr_format, limit=args.limit,
                            **config.options)
    finally:
        if client is not None:
            client.close()
    print(report)
    return 1 if report.failed else 0


EXAMPLES = """\
start here:
  xterramind demo                  embed the bundled Sentinel-2 scene and map its land cover (zarr + PNG)
  xterramind demo --download       the same with TerraMind's official weights (fetched once)

embeddings search:
  xterramind export xterramind-demo/embeddings.zarr cells
  xterramind search cells --lonlat -75.62 37.67 -k 5

an area on a Dask cluster:
  xterramind run area.yaml --dry-run      zones, regions, tiles, output size, device-hours
  xterramind run area.yaml                run it (again, to finish an interrupted run)

In Python: import xterramind; help(xterramind). Notebooks: notebooks/quickstart.ipynb.
"""

RUN_EXAMPLE = """\
a minimal area.yaml:
  area: [9.0, 45.0, 9.5, 45.5]            # west, south, east, north (degrees), or a GeoJSON file
  source: {stac: https://earth-search.aws.element84.com/v1, collections: [sentinel-2-l2a],
           modalities: [S2L2A], time: 2024-06-01/2024-08-31, composite: median}
  verb: embed                             # embed | generate | tokenize
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
    parser = argparse.ArgumentParser(prog="xterramind", formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="TerraMind, the any-to-any Earth-observation foundation model, over "
                                     "satellite datacubes of any size.", epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"xterramind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, epilog: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                   epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)

    run_demo = command("demo", "embed the bundled Sentinel-2 scene and generate its land cover, into zarr + a PNG")
    run_demo.add_argument("--model", default="terramind_v1_tiny", choices=list_models(include_micro=True),
                          metavar="NAME", help="a name from `xterramind models` (default: terramind_v1_tiny)")
    run_demo.add_argument("--output", default="xterramind-demo", help="folder for the stores and the picture "
                          "(default: xterramind-demo)")
    run_demo.add_argument("--zarr-format", type=int, default=3, choices=(2, 3), help="3 (default) or 2 for GDAL "
                          "3.6-3.10 (QGIS)")
    run_demo.add_argument("--download", action="store_true", help="download the official weights if missing "
                          "(otherwise: random weights, said loudly)")
    run_demo.set_defaults(run=demo)
    command("models", "list the model names").set_defaults(run=lambda _: print("\n".join(list_models())))
    run_export = command("export", "pool an embeddings zarr store into GeoParquet cells and a search index")
    run_export.add_argument("store", help="a zarr store written by embeddings.terramind.to_zarr()")
    run_export.add_argument("output", help="the folder to write (GeoParquet parts, _export.json, the index)")
    run_export.add_argument("--cell", type=int, default=224, help="cell side in pixels, a multiple of 16 (default 224)")
    run_export.add_argument("--int8", action="store_true", help="store int8 vectors with a per-vector scale")
    run_export.add_argument("--index", default="auto", choices=("auto", "exact", "ivf"), help="nearest-neighbour "
                            "index (default auto: exact up to 100,000 cells, IVF beyond)")
    run_export.add_argument("--variable", default="embeddings", help="the store's embeddings variable")
    run_export.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    run_export.set_defaults(run=export)
    run_search = command("search", "find the cells most similar to a place")
    run_search.add_argument("export", help="a folder written by `xterramind export`")
    where = run_search.add_mutually_exclusive_group(required=True)
    where.add_argument("--lonlat", nargs=2, type=float, metavar=("LON", "LAT"), help="the cell at this point")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"), help="the mean of these cells")
    run_search.add_argument("-k", type=int, default=10, help="how many hits (default 10)")
    run_search.set_defaults(run=search)
    run_area = command("run", "run a verb over an area on a Dask cluster, from a configuration file", RUN_EXAMPLE)
    run_area.add_argument("config", help="a YAML file: area, source, verb, model, output, cluster")
    run_area.add_argument("--dry-run", action="store_true", help="print the zones, regions, tiles, output size and "
                          "model time, and stop")
    run_area.add_argument("--limit", type=int, help="compute at most this many regions (a trial)")
    run_area.add_argument("--tiles-per-second", type=float, help="the model's speed for the time estimate "
                          "(default: measured now on this machine)")
    run_area.add_argument("--overwrite", action="store_true", help="replace an existing output store")
    run_area.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except XterramindError as error:
        print(f"xterramind: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
