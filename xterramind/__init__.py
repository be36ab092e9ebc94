"""xterramind: TerraMind, the any-to-any Earth-observation foundation model, over datacubes of any size.

Start here:

    >>> import xterramind
    >>> xterramind.list_models()
    ['terramind_v1_tiny', 'terramind_v1_small', 'terramind_v1_base', 'terramind_v1_large']
    >>> model = xterramind.load_model("terramind_v1_tiny")          # official weights
    >>> model = xterramind.load_model("terramind_v1_tiny", weights="random")   # offline, untrained
    >>> tokens = model.encode({"S2L2A": model.normalize("S2L2A", pixels)})   # (B, 196, 192)

On xarray cubes (any georeferenced Dataset or DataArray with y/x dims and band names):

    >>> cube = xterramind.open_sample()
    >>> cube.terramind.embed(model).terramind.to_zarr("embeddings.zarr")
    >>> cube.terramind.generate("LULC", model, seed=42).terramind.to_zarr("lulc.zarr")

From STAC items (Earth Search, Planetary Computer, a static catalogue), one aligned, lazy cube:

    >>> cube = xterramind.stac.load(search, ["S2L2A", "S1GRD", "DEM"], bbox=area, time="2024-07-01/2024-07-31")

Errors raised on purpose are subclasses of :class:`xterramind.errors.XterramindError`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xterramind")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from . import accessor, stac  # noqa: F401  (registers the .terramind accessor; xterramind.stac.load)
from .data import open_sample
from .errors import XterramindError
from .generate import LULC_CLASSES
from .models import TerraMindModel, list_models, load_model

__all__ = ["LULC_CLASSES", "TerraMindModel", "XterramindError", "__version__", "list_models", "load_model", "open_sample"]
