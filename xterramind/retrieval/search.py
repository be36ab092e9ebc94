"""An exported cell set: look up cells by place, find similar ones, read rows back with footprints.

An export is a folder of GeoParquet parts, its metadata (``META``, written last by ``export``) and its index.
Int8 vectors are decoded by ``xterramind.dequantize``, the zarr store's decoder: one formula for every product.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..arguments import whole_number
from ..embed import INT8_DECODING, INT8_NODATA, SCALE, dequantize
from ..errors import ForeignStoreError, InputError, OptionError, StoreError
from ..geo import transformer
from .index import VectorIndex

META = "_export.json"  # "_" keeps it out of the GeoParquet dataset the folder is
# An int8 export's vectors, as its metadata describes them: the zarr store's encoding, the names in the formula
# being columns (``q``: the codes, ``embeddings_scale``: the vector's length).
INT8_ENCODING = {"dtype": "int8", "decoding": INT8_DECODING, "variables": {"q": "embedding", SCALE: SCALE},
                 "nodata": INT8_NODATA}


def open(path) -> CellSet:
    """Open a cell export written by ``xterramind.retrieval.export``.

    Only the export's metadata is read now; parts, vectors and the index are read when a query needs them.

    Raises:
        InputError: nothing is at ``path``.
        ForeignStoreError: ``path`` holds something other than a cell export.

    Example:
        >>> cells = xterramind.retrieval.open("cells")
        >>> len(cells)
    """
    folder = Path(path)
    if not (folder / META).is_file():
        fix = "write one with embeddings.terramind.export()"
        if not folder.exists():
            raise InputError(f"{folder} is not an xterramind cell export (nothing is there); {fix}")
        raise ForeignStoreError(f"{folder} is not an xterramind cell export (no {META}); {fix}")
    return CellSet(folder)


class CellSet:
    """The cells of an export: their table (GeoParquet parts), their vectors and their index.

    Cells are addressed by row number, counted across the parts in order; get one with
    ``xterramind.retrieval.open``.

    Example:
        >>> cells = xterramind.retrieval.open("cells")
        >>> hits = cells.similar((-75.62, 37.67), k=10)
        >>> cells.meta["model"], cells.meta["crs"]
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / META).read_text())
        _check_encoding(self.meta, self.folder)
        self.parts = [name for name, _ in self.meta["parts"]]
        self._offsets = np.cumsum([0] + [count for _, count in self.meta["parts"]])
        self._index: VectorIndex | None = None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return f"CellSet({str(self.folder)!r}, {len(self)} cells of {self.meta['cell']} px, {self.meta['model']})"

    # -- vectors and rows -------------------------------------------------------------------------

    def vector_batches(self, columns=("embedding",)):
        """Yield the vectors of each part, in row order, as float32 ``(rows, dim)`` (int8 vectors rescaled),
        one part at a time so that any export fits in memory.

        Example:
            >>> total = sum(batch.sum(axis=0) for batch in cells.vector_batches())
        """
        import pyarrow.parquet as pq

        for name in self.parts:
            yield self._vectors(pq.read_table(self.folder / name, columns=list(columns) + self._scale_column()))

    def _scale_column(self) -> list[str]:
        return [SCALE] if self.meta["quantize"] == "int8" else []

    def _vectors(self, table) -> np.ndarray:
        values = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        if self.meta["quantize"] == "int8":
            return _decoded(values, table.column(SCALE).to_numpy())
        return values.astype(np.float32)

    def rows(self, ids: Sequence[int]):
        """The cells with these row numbers, as a GeoDataFrame in the given order (index: their position).

        Only the parts holding them are read.

        Example:
            >>> cells.rows([0, 41, 7])[["cell_id", "lon", "lat", "geometry"]]
        """
        import geopandas
        import pandas

        ids = np.asarray(ids, dtype=np.int64)
        part_of = np.searchsorted(self._offsets, ids, side="right") - 1
        pieces = []
        for part in np.unique(part_of):
            wanted = np.nonzero(part_of == part)[0]
            table = geopandas.read_parquet(self.folder / self.parts[part])
            chosen = table.iloc[ids[wanted] - self._offsets[part]].copy()
            chosen.index = wanted
            pieces.append(chosen)
        return geopandas.GeoDataFrame(pandas.concat(pieces).sort_index(), crs=self.meta["crs"])

    def cells_in(self, geometry) -> np.ndarray:
        """Row numbers of the cells intersecting ``geometry`` (a shapely geometry in the export's CRS).

        Each part's covering-bbox columns pick the candidates; only those are tested exactly.

        Example:
            >>> import shapely
            >>> ids = cells.cells_in(shapely.box(420_000, 4_160_000, 425_000, 4_165_000))
            >>> cells.rows(ids)
        """
        import geopandas
        import pyarrow.parquet as pq
        import shapely

        west, south, east, north = geometry.bounds
        found = []
        for part, name in enumerate(self.parts):
            boxes = pq.read_table(self.folder / name, columns=["bbox"]).column("bbox").combine_chunks()
            low_x, low_y, high_x, high_y = (boxes.field(f).to_numpy() for f in ("xmin", "ymin", "xmax", "ymax"))
            near = np.nonzero((low_x <= east) & (high_x >= west) & (low_y <= north) & (high_y >= south))[0]
            if len(near):
                shapes = geopandas.read_parquet(self.folder / name, columns=["geometry"]).geometry.values[near]
                found.append(near[shapely.intersects(shapes, geometry)] + self._offsets[part])
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The vectors of the cells with these row numbers, float32 ``(len(ids), dim)`` in the given order.

        Example:
            >>> cells.vectors([0, 1]).shape
            (2, 768)
        """
        import pyarrow.parquet as pq

        ids = np.asarray(ids, dtype=np.int64)
        part_of = np.searchsorted(self._offsets, ids, side="right") - 1
        out = np.empty((len(ids), self.meta["dim"]), dtype=np.float32)
        for part in np.unique(part_of):
            wanted = np.nonzero(part_of == part)[0]
            columns = ["embedding", *self._scale_column()]
            table = pq.read_table(self.folder / self.parts[part], columns=columns).take(ids[wanted] - self._offsets[part])
            out[wanted] = self._vectors(table)
        return out

    # -- the index --------------------------------------------------------------------------------

    def build_index(self, kind: str = "auto", nprobe: int | None = None) -> VectorIndex:
        """Build (or rebuild) the nearest-neighbour index beside the parts, e.g. after exporting with
        ``index=None`` or to trade speed for recall.

        Args:
            kind: ``"auto"`` (exact up to 100,000 cells, else ``"ivf"``), ``"exact"`` (one memory-mapped
                matrix) or ``"ivf"`` (faiss, 8-bit vectors; needs ``faiss-cpu``).
            nprobe: ``ivf`` lists searched per query (default a twentieth of them): more is slower and
                finds more of the true nearest cells.

        Example:
            >>> cells.build_index("ivf", nprobe=64)
        """
        self._index = VectorIndex.build(self.vector_batches, len(self), self.meta["dim"], self.folder, kind, nprobe)
        return self._index

    @property
    def index(self) -> VectorIndex:
        """The nearest-neighbour index, loaded on first use; raises if the export has none yet."""
        if self._index is None:
            if not (self.folder / "_index.json").exists():
                raise InputError(f"{self.folder} has no index yet: cells.build_index()")
            self._index = VectorIndex.load(self.folder)
        return self._index

    # -- queries ----------------------------------------------------------------------------------

    def similar(self, query, k: int = 10, *, crs: str = "EPSG:4326"):
        """The ``k`` cells most similar to ``query``, best first, as a GeoDataFrame with ``score`` and ``rank``.

        ``query``: a point ``(lon, lat)`` (or ``(x, y)`` with ``crs=`` the export's CRS) — the cell there;
        a bbox ``(west, south, east, north)`` or a shapely/GeoJSON polygon — the mean of the cells it
        touches; or a vector of the embedding's length.

        Example:
            >>> cells.similar((-75.62, 37.67), k=5)[["cell_id", "score", "geometry"]]
        """
        k = whole_number("k", k)
        if k < 1:
            raise OptionError(f"k must be at least 1, got {k}")
        vector = self.query_vector(query, crs)
        scores, ids = self.index.search(vector[None], k)
        keep = ids[0] >= 0
        hits = self.rows(ids[0][keep])
        hits["score"] = scores[0][keep]
        hits["rank"] = np.arange(1, keep.sum() + 1)
        return hits

    def query_vector(self, query, crs: str = "EPSG:4326") -> np.ndarray:
        """The vector ``similar`` searches with: ``query`` itself when it is a vector, else the mean
        of the cells under a point, bbox or polygon (given in ``crs``).

        Raises:
            InputError: no exported cell lies under the query.

        Example:
            >>> water = cells.query_vector((-75.621, 37.655))
            >>> cells.similar(water - cells.query_vector((-75.61, 37.681)), k=5)
        """
        array = np.asarray(query, dtype=np.float64) if not _is_geometry(query) else None
        if array is not None and array.ndim == 1 and len(array) == self.meta["dim"]:
            return array.astype(np.float32)
        geometry = _to_export_crs(_as_geometry(query, array), crs, self.meta["crs"])
        ids = self.cells_in(geometry)
        if not len(ids):
            west, south, east, north = self.meta["lonlat_bounds"]
            raise InputError(f"no exported cell at {query!r} (coordinates in {crs}); the export covers longitudes "
                             f"{west:.4f}..{east:.4f} and latitudes {south:.4f}..{north:.4f}")
        return self.vectors(ids).mean(axis=0)


def _check_encoding(meta: dict, folder: Path) -> None:
    """An int8 export must be in the encoding this xterramind decodes (earlier ones scaled int8 linearly)."""
    if meta["quantize"] == "int8" and meta.get("encoding") != INT8_ENCODING:
        raise StoreError(f"{folder} holds int8 vectors in another encoding than {INT8_DECODING!r} (an export of an "
                         "earlier xterramind); export the embeddings again")


def _decoded(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Float32 vectors ``(rows, dim)`` from their int8 codes and lengths, by the zarr store's own decoder."""
    pair = xr.Dataset({"embeddings": (("row", "embedding"), codes), SCALE: ("row", lengths)})
    return dequantize(pair).values


def _is_geometry(query) -> bool:
    return hasattr(query, "geom_type") or isinstance(query, dict)


def _as_geometry(query, array):
    import shapely
    from shapely.geometry import shape

    if isinstance(query, dict):
        return shape(query)
    if hasattr(query, "geom_type"):
        return query
    if array is not None and array.shape == (2,):
        return shapely.Point(*array)
    if array is not None and array.shape == (4,):
        return shapely.box(*array)
    raise InputError("query must be a point (x, y), a bbox (west, south, east, north), a polygon, or a vector")


def _to_export_crs(geometry, crs: str, target: str):
    from pyproj import CRS
    from shapely.ops import transform

    if CRS.from_user_input(crs) == CRS.from_user_input(target):
        return geometry
    project = transformer(crs, target).transform
    return transform(project, geometry)
