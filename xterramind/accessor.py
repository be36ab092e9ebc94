"""The ``.terramind`` accessor on xarray Datasets and DataArrays: a thin facade over the engine and the store."""

from __future__ import annotations

import xarray as xr

from . import cog, embed, generate, pipeline, plot, predict, retrieval, store, tokens
from . import overviews as xterramind_overviews  # the module; ``overviews`` is to_zarr's option
from .arguments import check_keywords, checked
from .errors import OptionError


class TerraMindAccessor:
    """TerraMind verbs on a georeferenced cube (``cube.terramind.embed(model)``) and writing of
    their lazy results (``result.terramind.to_zarr(path)``)."""

    def __init__(self, obj: xr.Dataset | xr.DataArray):
        self._obj = obj

    def embed(self, model, modalities=None, **options) -> xr.DataArray | xr.Dataset:
        """Lazily embed the cube with TerraMind's encoder.

        Returns a dask-backed DataArray named ``embeddings`` with dims ``(time,) embedding, y, x`` on
        the token grid: one cell per 16 x 16 pixels, same CRS and origin, 16 x the pixel size. With
        ``dtype="int8"``, a Dataset of the int8 ``embeddings`` and their lengths ``embeddings_scale``
        ``(time,) y, x``; ``xterramind.dequantize`` turns it into float32 vectors.

        Args:
            model: a handle from ``xterramind.load_model``.
            modalities: ``None`` to find them from band names, a list such as ``["S2L2A", "S1GRD"]``,
                or a mapping ``{"S2L2A": [band names in model order]}`` or ``{"S1GRD": other_cube}``.
            layer: encoder layer to return (default ``-1``, the last, normalized).
            merge: ``"mean"`` (default), ``"max"`` or ``"concat"`` across modalities.
            tile_size: tile side in pixels (default: the model's 224).
            overlap: pixels shared by neighbouring tiles (default 32, a multiple of 32); each token
                comes from the tile it is most central in.
            chunks: output chunk (region) side in tokens (default: about 128, a multiple of the stride).
            batch_size: tiles per forward pass (default 8 on CPU, 64 on GPU).
            tim: Thinking-in-Modalities, e.g. ``["LULC"]``: generate these token grids per tile first and
                encode them with the inputs (their seed: ``seed``).
            check_input: refuse pixels far from TerraMind's 10 m and values far from its training range
                (0-1 reflectance, a DEM in cm, ...) with the fix (default ``True``); ``False`` when you mean it.
                A CRS in degrees is always refused (reproject to UTM).
            dtype: how the vectors are stored: ``"float32"`` (default, as the model gives them), ``"float16"``
                (half the size; each value within 2^-11 of itself) or ``"int8"`` (a quarter; the AlphaEarth
                Foundations encoding of the unit vector, -128 where nodata, plus each vector's length; every
                component within 0.8 % of the vector's length, cosine similarity to float32 above 0.9997).

        Example:
            >>> model = xterramind.load_model("terramind_v1_base")
            >>> emb = cube.terramind.embed(model)            # lazy
            >>> emb.terramind.to_zarr("embeddings.zarr")     # computes, region by region
            >>> cube.terramind.embed(model, dtype="int8").terramind.to_zarr("int8.zarr")   # a quarter of the size
        """
        check_keywords("embed", options, embed.prepare, skip=("cube", "model"))
        return embed.embed(self._obj, model, modalities, **options)

    def generate(self, targets, model, *, seed: int = 0, **options) -> xr.Dataset:
        """Lazily generate other modalities from the cube: TerraMind's any-to-any generation.

        Returns a Dataset on the cube's pixel grid (same CRS and transform), one variable per target:
        ``LULC`` as uint8 class ids (0 no data, 1 water, 2 trees, 3 flooded vegetation, 4 crops, 5 built
        area, 6 bare ground, 7 snow/ice, 8 clouds, 9 rangeland) with ``LULC_probability`` (class, y, x);
        images (``S2L2A``, ``S1GRD``, ``S1RTC``, ``DEM``, ``NDVI``) in physical units. Targets are
        generated in the order given, each seeing the ones before it.

        Args:
            targets: a name or a list, e.g. ``"LULC"`` or ``["S1GRD", "LULC"]``.
            model: a handle from ``xterramind.load_model``; its tokenizers follow its weights policy.
            seed: the same seed gives the same result on any chunking and cluster.
            modalities, tile_size, overlap, chunks, batch_size, check_input: as for ``embed``.
            top_k, top_p, temperature: token sampling (defaults 0, 0.8, 1.0, as the reference).
            timesteps: diffusion steps for image targets (default 50, as the reference).
            probabilities: how ``LULC_probability`` is stored: ``"float32"`` (default), ``"uint8"`` (a quarter
                of the size, within 1/508; CF-packed, so ``xarray.open_zarr`` and ``xterramind.dequantize`` give
                floats, NaN where nodata) or ``None`` (not stored). ``LULC`` is the argmax of the float blend
                whatever this is.

        Example:
            >>> lulc = cube.terramind.generate("LULC", model, seed=42)
            >>> lulc.terramind.to_zarr("lulc.zarr")
        """
        check_keywords("generate", options, generate.prepare, skip=("cube", "targets", "model"))
        return generate.generate(self._obj, targets, model, seed=seed, **options)

    def tokenize(self, modality: str, model, **options) -> xr.DataArray:
        """Lazily tokenize one modality (S2L2A, S1GRD, S1RTC or DEM): int32 tokens on the token grid,
        one per 16 x 16 pixels, -1 where the pixels are nodata.

        Example:
            >>> tokens = cube.terramind.tokenize("S2L2A", model)
        """
        check_keywords("tokenize", options, tokens.prepare_tokenize, skip=("cube", "modality", "model"))
        return tokens.tokenize(self._obj, modality, model, **options)

    def detokenize(self, modality: str, model, *, seed: int = 0, **options):
        """Lazily decode this token grid into ``modality``'s pixels on the 16x finer grid (LULC: class ids
        and probabilities; images: physical units, via diffusion with ``timesteps`` steps).

        Example:
            >>> pixels = tokens.terramind.detokenize("S2L2A", model, timesteps=10)
        """
        check_keywords("detokenize", options, tokens.prepare_detokenize, skip=("tokens", "modality", "model"))
        return tokens.detokenize(self._obj, modality, model, seed=seed, **options)

    def predict(self, task, **options) -> xr.Dataset:
        """Lazily run a model fine-tuned with TerraTorch (``xterramind.load_task``) over the cube.

        Returns a Dataset on the cube's pixel grid (same CRS and transform). Segmentation: ``classes``, the
        most likely class of each pixel after the tiles' class probabilities are blended (the smallest unsigned
        dtype that holds them; its largest value where there is no valid input), and with ``probabilities`` the
        blended ``class_probability`` (class, y, x). Regression: ``prediction``, the blended value in the model's
        units (``output``, y, x for several), NaN where there is no valid input.

        Args:
            task: a handle from ``xterramind.load_task(config, checkpoint)``.
            modalities: the cube's bands for the model's inputs, when their names do not say: a list such as
                ``["S2L1C", "S1GRD"]`` or a mapping ``{"S2L1C": [band names in model order]}`` or
                ``{"S1GRD": other_cube}`` (default: the model's inputs, found from band names).
            seed: the seed of a TiM model's token draws (each tile's from this seed and its position).
            tile_size, overlap: the tiling (default: the config's ``tiled_inference_parameters`` where they fit
                the 16 px token lattice, else 224 px tiles overlapping by 32).
            chunks: output chunk (region) side in tokens; batch_size: tiles per forward pass.
            blend: blend overlapping tiles (default ``True``); ``False`` takes each pixel from one tile.
            probabilities: segmentation: also store the blended class probabilities as ``"float32"`` or
                ``"uint8"`` (CF-packed, within 1/508); ``None`` (default): only the classes.
            check_input: refuse pixels far from 10 m and implausible units (default ``True``).

        Example:
            >>> task = xterramind.load_task("sen1floods11.yaml", "best.ckpt")
            >>> floods = cube.terramind.predict(task)               # lazy
            >>> floods.terramind.to_zarr("floods.zarr")             # region by region, resumable
        """
        check_keywords("predict", options, predict.prepare, skip=("cube", "model"))
        return predict.predict(self._obj, task, **options)

    @checked("export")
    def export(self, path, *, cell: int = 224, quantize=None, index="auto", overwrite: bool = False, progress=None):
        """Export these embeddings as pooled cells to GeoParquet (one part per chunk) plus a search index.

        Each ``cell`` x ``cell`` px cell (224: one tile) gets the mean of its valid tokens, its footprint,
        centre lon/lat, time, valid fraction, model and weights. ``quantize="int8"`` stores int8 vectors
        as ``embed(dtype="int8")`` does (unit-vector codes and lengths, the same formula). Open the result with ``xterramind.retrieval.open``.

        Example:
            >>> embeddings.terramind.export("cells", cell=224)
            >>> xterramind.retrieval.open("cells").similar((-75.62, 37.67), k=10)
        """
        return retrieval.export(self._obj, path, cell=cell, quantize=quantize, index=index, overwrite=overwrite,
                                progress_bar=progress)

    @checked("fewshot")
    def fewshot(self, examples, *, crs: str = "EPSG:4326"):
        """Map labels over these embeddings from a few examples per label (nearest class centroid).

        Example:
            >>> embeddings.terramind.fewshot({"water": [(-75.621, 37.655)], "marsh": [(-75.61, 37.681)]})
        """
        return retrieval.fewshot(self._obj, examples, crs=crs)

    def plot(self, **options):
        """A picture of this cube or result, chosen by what it is, as a matplotlib Figure: land cover with
        its legend, embeddings as their first three principal components, bands as a false-colour
        composite, anything else on a colour scale. Reads at most ``max_size`` (1024) pixels a side.

        Options: ``bands`` (one or three band names), ``ax``, ``max_size``, ``title``; see
        ``xterramind.plot.plot``.

        Example:
            >>> cube.terramind.plot()                                   # false colour (NIR, red, green)
            >>> cube.terramind.generate("LULC", model).terramind.plot().savefig("lulc.png")
            >>> embeddings.terramind.plot()                             # principal components as RGB
        """
        check_keywords("plot", options, plot.plot, skip=("obj",))
        return plot.plot(self._obj, **options)

    @checked("to_zarr")
    def to_zarr(self, path, *, resume: bool = True, overwrite: bool = False, zarr_format: int = store.DEFAULT_ZARR_FORMAT,
                overviews: bool = False, progress=None):
        """Write this lazy result to a georeferenced zarr store, region by region.

        Interrupted (Ctrl-C stops it once the regions in flight are written)? Run the same call again:
        regions already written are skipped. A store that holds something else is never overwritten unless
        ``overwrite=True``. ``zarr_format=2`` (the default) opens with every GDAL from 3.6 (rasterio's
        wheels, QGIS); ``zarr_format=3`` needs GDAL 3.11 or newer. Read it back with ``xterramind.open``.
        ``overviews=True`` then adds coarser levels for viewers (``xterramind.overviews.build``: land cover by
        mode, images and embeddings by mean), resumable too.

        Example:
            >>> report = emb.terramind.to_zarr("embeddings.zarr")
            >>> print(report)   # regions written, skipped, time
            >>> emb = xterramind.open("embeddings.zarr")   # the same result, georeferenced
            >>> lulc.terramind.to_zarr("lulc.zarr", overviews=True)   # with levels a viewer draws quickly
        """
        if not isinstance(overviews, bool):
            raise OptionError(f"overviews must be True or False, got {overviews!r}")
        report = pipeline.write(self._obj, path, resume=resume, overwrite=overwrite, zarr_format=zarr_format,
                                progress_bar=progress)
        if overviews:
            xterramind_overviews.build(path, progress=progress)
        return report

    @checked("to_cog")
    def to_cog(self, path, *, variable=None, overviews="auto", compress: str = "deflate", overwrite: bool = False,
               progress=None):
        """Export this result (lazy, or read with ``xterramind.open``) to Cloud-Optimized GeoTIFFs, one per
        variable, region by region: memory stays flat whatever the area. Land cover comes with its colour table
        and class names, int8 embeddings with their lengths' COG and the decoding formula. For an area run's store,
        one file per zone per 8,192 px tile: ``xterramind.cog.write_tiles`` (``xterramind cog``).

        Returns the paths written (see ``xterramind.cog.write`` for the options).

        Example:
            >>> lulc.terramind.to_cog("lulc.tif")
            [PosixPath('lulc.tif')]
            >>> xterramind.open("int8.zarr").terramind.to_cog("embeddings.tif")   # and embeddings_embeddings_scale.tif
        """
        return cog.write(self._obj, path, variable=variable, overviews=overviews, compress=compress,
                         overwrite=overwrite, progress=progress)


xr.register_dataset_accessor("terramind")(TerraMindAccessor)
xr.register_dataarray_accessor("terramind")(TerraMindAccessor)
