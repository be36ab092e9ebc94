"""Write the pictures the documentation site shows, from the bundled real scene.

    python tools/docs_pictures.py [--weights auto|random]

The false-colour composite is the data itself. The embeddings picture depends on the weights: with the
official ones it shows what TerraMind sees; with ``random`` (the default here, where weights cannot be
downloaded) it shows the pipeline, and ``plot()`` says so on the picture.
"""

import argparse
from pathlib import Path

import matplotlib

import xterramind

matplotlib.use("Agg")
IMAGES = Path(__file__).parents[1] / "docs" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    args = parser.parse_args()
    cube = xterramind.open_sample()
    model = xterramind.load_model("terramind_v1_tiny", weights=args.weights, device="cpu")
    IMAGES.mkdir(exist_ok=True)
    pictures = {
        "false_colour.jpg": cube.terramind.plot(title="the bundled scene in false colour (NIR, red, green)"),
        "embeddings.jpg": cube.terramind.embed(model).terramind.plot(title="embeddings as RGB"),
    }
    for name, figure in pictures.items():
        figure.set_size_inches(6.4, 5.2)
        figure.savefig(IMAGES / name, dpi=90, pil_kwargs={"quality": 85})
        print(IMAGES / name, f"{(IMAGES / name).stat().st_size / 1000:.0f} kB")


if __name__ == "__main__":
    main()
