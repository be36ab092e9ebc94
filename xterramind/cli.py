"""The ``xterramind`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import __version__, list_models, load_model
from .errors import WeightsUnavailableError, XterramindError
from .models import get_config
from .models.weights import locate_official


def _official_or_random(name: str):
    """The official weights if this machine has them (no download), else seeded random ones, said loudly."""
    try:
        return load_model(name, weights=locate_official(get_config(name), download=False))
    except WeightsUnavailableError as error:
        banner = "!" * 78
        print(f"{banner}\nRUNNING ON RANDOM WEIGHTS: the results show the pipeline, not TerraMind's knowledge.\n"
              f"{error}\n{banner}", file=sys.stderr)
        return load_model(name, weights="random")


def demo(args: argparse.Namespace) -> None:
    """Embed the bundled real Sentinel-2 scene tile by tile and summarize the embeddings."""
    import rasterio

    from .data import SAMPLE_STACK

    model = _official_or_random(args.model)
    with rasterio.open(SAMPLE_STACK) as source:
        pixels = source.read().astype(np.float32)
    size = model.config.image_size
    corners = [(0, 0), (0, pixels.shape[2] - size), (pixels.shape[1] - size, 0), (pixels.shape[1] - size, pixels.shape[2] - size)]
    tiles = np.stack([pixels[:, r : r + size, c : c + size] for r, c in corners])
    start = time.perf_counter()
    embeddings = model.encode({"S2L2A": model.normalize("S2L2A", tiles)}, layers=-1)
    seconds = time.perf_counter() - start
    print(f"{model!r}\nbundled scene {SAMPLE_STACK.name}: {pixels.shape[1]} x {pixels.shape[2]} px, 12 bands")
    print(f"embedded {len(tiles)} tiles of {size} px in {seconds:.2f} s -> {tuple(embeddings.shape)} (tile, token, feature)")
    for (row, col), tile in zip(corners, embeddings, strict=False):
        print(f"  tile at pixel ({row:3d}, {col:3d}): mean {tile.mean():+.3f}, std {tile.std():.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xterramind", description="TerraMind over Earth-observation datacubes.")
    parser.add_argument("--version", action="version", version=f"xterramind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="embed the bundled real Sentinel-2 scene")
    run_demo.add_argument("--model", default="terramind_v1_tiny", choices=list_models(include_micro=True))
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
