"""TerraMind, the any-to-any Earth-observation foundation model, over datacubes of any size.

A first map (the bundled real Sentinel-2 scene; official weights, or weights="random" offline):

    >>> import xterramind
    >>> cube = xterramind.open_sample()                          # lazy, georeferenced xarray cube
    >>> model = xterramind.load_model("terramind_v1_tiny")       # official weights (Hugging Face)
    >>> lulc = cube.terramind.generate("LULC", model, seed=42)   # land cover, lazy, on the cube's grid
    >>> lulc.terramind.plot().savefig("lulc.png")                # nine classes with a legend
    >>> lulc.terramind.to_zarr("lulc.zarr")                      # georeferenced zarr, resumable
    >>> lulc = xterramind.open("lulc.zarr")                      # read back, with its CRS and attributes

Any georeferenced cube works: an xarray Dataset (one variable per band) or DataArray (a ``band`` dimension)
with dims ``y`` and ``x``, bands named like Sentinel-2 (``B02``/``blue``...), Sentinel-1 (``vv``, ``vh``) or
DEM. On it, ``cube.terramind`` offers:

    embed(model)               embeddings, one vector per 16 x 16 pixels
    generate(targets, model)   other modalities: "LULC", "S1GRD", "DEM", "NDVI", ...
    predict(task)              a model fine-tuned with TerraTorch (xterramind.load_task): floods, crops, ...
    tokenize / detokenize      TerraMind's discrete tokens and back
    plot()                     the right picture for what it is
    to_zarr(path)              compute and write, region by region (compact: embed(dtype="int8"), then dequantize)
    export(path), fewshot()    embeddings to searchable GeoParquet cells; maps from a few examples

Where the pixels come from: ``xterramind.stac.load(...)`` (STAC APIs and catalogues). Whole areas, up to a
continent, on a Dask cluster: ``xterramind.planner.plan_area`` and ``xterramind.runner.run``, or the command
``xterramind run CONFIG``. Models: ``xterramind.list_models()``; tensors in, tensors out: ``model.encode``.

Every error raised on purpose is an ``xterramind.errors.XterramindError`` whose message says how to fix it.
Docs: the ``docs/`` site (``mkdocs serve``) and ``notebooks/quickstart.ipynb``.
"""

from . import accessor, stac  # noqa: F401  (registers the .terramind accessor; xterramind.stac.load)
from .data import open_sample
from .embed import dequantize
from .errors import XterramindError
from .facts import LULC_CLASSES
from .models import TaskModel, TerraMindModel, list_models, load_model, load_task
from .store import open_result as open  # xterramind.open(path), as xarray.open_zarr
from .version import __version__

__all__ = ["LULC_CLASSES", "TaskModel", "TerraMindModel", "XterramindError", "__version__", "dequantize", "list_models",
           "load_model", "load_task", "open", "open_sample"]
