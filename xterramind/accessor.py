"""The ``.terramind`` accessor on xarray Datasets and DataArrays: a thin facade over the engine and the store."""

from __future__ import annotations

import xarray as xr

from . import engine, store


class TerraMindAccessor:
    """TerraMind verbs on a georeferenced cube (``cube.terramind.embed(model)``) and writing of
    their lazy results (``result.terramind.to_zarr(path)``)."""

    def __init__(self, obj: xr.Dataset | xr.DataArray):
        self._obj = obj

    def embed(self, model, modalities=None, **options) -> xr.DataArray:
        """Lazily embed the cube with TerraMind's encoder.

        Returns a dask-backed DataArray named ``embeddings`` with dims ``(time,) embedding, y, x`` on
        the token grid: one cell per 16 x 16 pixels, same CRS and origin, 16 x the pixel size.

        Args:
            model: a handle from :func:`xterramind.load_model`.
            modalities: ``None`` to find them from band names, a list such as ``["S2L2A", "S1GRD"]``,
                or a mapping ``{"S2L2A": [band names in model order]}`` or ``{"S1GRD": other_cube}``.
            layer: encoder layer to return (default ``-1``, the last, normalized).
            merge: ``"mean"`` (default), ``"max"`` or ``"concat"`` across modalities.
            tile_size: tile side in pixels (default: the model's 224).
            overlap: pixels shared by neighbouring tiles (default 32, a multiple of 32); each token
                comes from the tile it is most central in.
            chunks: output chunk (region) side in tokens (default: about 128, a multiple of the stride).
            batch_size: tiles per forward pass (default 8 on CPU, 64 on GPU).

        Example:
            >>> model = xterramind.load_model("terramind_v1_base")
            >>> emb = cube.terramind.embed(model)            # lazy
            >>> emb.terramind.to_zarr("embeddings.zarr")     # computes, region by region
        """
        return engine.embed(self._obj, model, modalities, **options)

    def to_zarr(self, path, *, resume: bool = True, overwrite: bool = False, zarr_format: int = 3, progress=None):
        """Write this lazy result to a georeferenced zarr store, region by region.

        Interrupted? Run the same call again: regions already written are skipped. A store that holds
        something else is never overwritten unless ``overwrite=True``. Use ``zarr_format=2`` for GDAL
        3.6-3.10 (QGIS); v3 needs GDAL 3.11 or newer.

        Example:
            >>> report = emb.terramind.to_zarr("embeddings.zarr")
            >>> print(report)   # regions written, skipped, time
        """
        return store.write(self._obj, path, resume=resume, overwrite=overwrite, zarr_format=zarr_format, progress_bar=progress)


xr.register_dataset_accessor("terramind")(TerraMindAccessor)
xr.register_dataarray_accessor("terramind")(TerraMindAccessor)
