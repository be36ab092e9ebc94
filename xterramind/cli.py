"""The ``xterramind`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__, list_models, load_model
from .errors import WeightsUnavailableError, XterramindError
from .models import get_config
from .models.weights import locate_official


def _official_or_random(name: str, download: bool):
    """The official weights if they can be had, else seeded random ones, said loudly."""
    try:
        return load_model(name, weights=locate_official(get_config(name), download=download))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xterramind", description="TerraMind over Earth-observation datacubes.")
    parser.add_argument("--version", action="version", version=f"xterramind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="embed the bundled Sentinel-2 scene and generate its land cover, into zarr")
    run_demo.add_argument("--model", default="terramind_v1_tiny", choices=list_models(include_micro=True))
    run_demo.add_argument("--output", default="xterramind-demo", help="folder for the store and the picture")
    run_demo.add_argument("--zarr-format", type=int, default=3, choices=(2, 3), help="2 for GDAL 3.6-3.10 (QGIS)")
    run_demo.add_argument("--download", action="store_true", help="download the official weights if missing")
    run_demo.set_defaults(run=demo)
    commands.add_parser("models", help="list the model names").set_defaults(run=lambda _: print("\n".join(list_models())))
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except XterramindError as error:
        print(f"xterramind: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
