"""Few-shot mapping: nearest-centroid classification of every token from a few labelled places.

The TerraMind paper's 1-shot 5-way protocol: one example per class, five classes, each class a centroid
(the mean of its examples' unit embeddings), every token labelled with the class whose centroid is most
similar (cosine). Examples are points (the token under each) or polygons (every token whose centre lies
inside), in longitude/latitude unless ``crs=`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..embed import dequantize
from ..errors import InputError, NoValidDataError
from ..geo import grid_of, transformer
from .index import normalized

NO_LABEL = -1


def fewshot(embeddings: xr.DataArray, examples: Mapping, *, crs: str = "EPSG:4326") -> xr.Dataset:
    """Label every token of ``embeddings`` (``embedding, y, x``) by its most similar class centroid.

    Each label's centroid is the mean of its examples' unit embeddings (the TerraMind paper's few-shot
    protocol), so one example per label already gives a map; more examples, or polygons, steady it.

    Args:
        embeddings: the result of ``embed`` for one date (select it first with ``isel(time=...)``), of any
            ``dtype`` (int8 ones decoded with ``xterramind.dequantize``).
        examples: ``{label: [points or polygons]}``; a point is ``(x, y)``, a polygon a shapely geometry
            or GeoJSON; or a GeoDataFrame with a ``label`` column. At least two labels.
        crs: the CRS of the examples' coordinates.

    Returns:
        A lazy Dataset: ``label`` (int16 index into ``attrs["labels"]``, -1 where the embedding is NaN)
        and ``similarity`` (cosine to the chosen centroid).

    Raises:
        InputError: several dates, fewer than two labels, or a label whose examples all miss the grid.
        NoValidDataError: a label whose examples all lie where the embedding is NaN.

    Example:
        >>> mapped = embeddings.terramind.fewshot({"water": [(-75.621, 37.655)], "fields": [(-75.64, 37.687)]})
        >>> mapped.label.plot()
    """
    embeddings = dequantize(embeddings)  # int8 codes to vectors, float16 to float32
    if "time" in embeddings.dims:
        raise InputError("few-shot mapping works on one date: select it first, e.g. embeddings.isel(time=0)")
    if not isinstance(embeddings, xr.DataArray) or "embedding" not in embeddings.dims:
        raise InputError("fewshot takes the embeddings DataArray from embed() (dims embedding, y, x)")
    examples = _as_mapping(examples)
    grid = grid_of(embeddings.isel(embedding=0), "the embeddings")
    centroids = np.stack([_centroid(embeddings, grid, label, places, crs) for label, places in examples.items()])
    data = embeddings.transpose("embedding", "y", "x")
    scores = xr.apply_ufunc(_classify, data, kwargs={"centroids": centroids}, input_core_dims=[["embedding"]],
                            output_core_dims=[["result"]], dask="parallelized", output_dtypes=[np.float32],
                            dask_gufunc_kwargs={"output_sizes": {"result": 2}})
    labels = scores.isel(result=0).astype(np.int16)
    result = xr.Dataset({"label": labels.drop_vars("result", errors="ignore"),
                         "similarity": scores.isel(result=1).drop_vars("result", errors="ignore")})
    result.attrs = {**{k: v for k, v in embeddings.attrs.items() if k != "product"}, "product": "fewshot",
                    "labels": list(examples), "shots": {k: len(v) for k, v in examples.items()}}
    result["label"].attrs = {"flag_values": list(range(len(examples))), "flag_meanings": " ".join(map(str, examples)),
                             "nodata": NO_LABEL}
    return result.rio.write_crs(grid.crs)


def _as_mapping(examples) -> dict:
    if hasattr(examples, "geometry") and "label" in getattr(examples, "columns", ()):
        crs_examples = {}
        for label, group in examples.groupby("label"):
            crs_examples[label] = list(group.geometry)
        return crs_examples
    if not isinstance(examples, Mapping) or len(examples) < 2:
        raise InputError("examples must map at least two labels to places: {'water': [(lon, lat)], 'forest': [...]}")
    for label, places in examples.items():
        if not places:
            raise InputError(f"label {label!r} has no example place")
    return {label: list(places) for label, places in examples.items()}


def _centroid(embeddings, grid, label, places, crs) -> np.ndarray:
    import shapely
    from shapely.geometry import shape
    from shapely.ops import transform

    project = transformer(crs, grid.crs).transform
    rows, cols = [], []
    inverse = ~grid.transform
    for place in places:
        geometry = shape(place) if isinstance(place, dict) else place if hasattr(place, "geom_type") else shapely.Point(*place)
        geometry = transform(project, geometry)
        if geometry.geom_type == "Point":
            col, row = inverse * (geometry.x, geometry.y)
            rows.append(int(np.floor(row)))
            cols.append(int(np.floor(col)))
            continue
        col_range, row_range = _index_range(inverse, geometry.bounds, grid)
        yy, xx = np.meshgrid(row_range, col_range, indexing="ij")
        centres_x, centres_y = grid.transform * (xx + 0.5, yy + 0.5)
        inside = shapely.contains_xy(geometry, centres_x, centres_y)
        rows.extend(yy[inside].tolist())
        cols.extend(xx[inside].tolist())
    picked = [(r, c) for r, c in zip(rows, cols, strict=True) if 0 <= r < grid.height and 0 <= c < grid.width]
    if not picked:
        raise InputError(f"no example of {label!r} falls on the embeddings' grid (coordinates in {crs})")
    r, c = np.array(picked).T
    points = embeddings.isel(y=xr.DataArray(r, dims="place"), x=xr.DataArray(c, dims="place"))
    vectors = points.transpose("place", "embedding").values
    vectors = vectors[np.isfinite(vectors).all(axis=1)]
    if not len(vectors):
        raise NoValidDataError(f"every example of {label!r} lies where the embedding is NaN (nodata)")
    return normalized(normalized(vectors).mean(axis=0))


def _index_range(inverse, bounds, grid):
    west, south, east, north = bounds
    corners = [inverse * (x, y) for x in (west, east) for y in (south, north)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    col_range = np.arange(max(int(np.floor(min(cols))), 0), min(int(np.ceil(max(cols))), grid.width))
    row_range = np.arange(max(int(np.floor(min(rows))), 0), min(int(np.ceil(max(rows))), grid.height))
    return col_range, row_range


def _classify(block: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``(..., D)`` embeddings -> ``(..., 2)``: [best class index, its cosine similarity]; NaN -> [-1, NaN]."""
    valid = np.isfinite(block).all(axis=-1)
    similarity = normalized(np.where(valid[..., None], block, 0)) @ centroids.T
    best = similarity.argmax(axis=-1)
    out = np.stack([best.astype(np.float32), np.take_along_axis(similarity, best[..., None], -1)[..., 0]], axis=-1)
    out[~valid] = (NO_LABEL, np.nan)
    return out
