"""Embeddings as a product: pooled-cell export to GeoParquet, a nearest-neighbour index, similarity
search and few-shot mapping.

    >>> report = embeddings.terramind.export("virginia-cells", cell=224)     # GeoParquet parts + an index
    >>> cells = xterramind.retrieval.open("virginia-cells")
    >>> cells.similar((-75.62, 37.67), k=10)                                  # a GeoDataFrame of hits
    >>> labels = embeddings.terramind.fewshot({"water": [(-75.621, 37.655)], "marsh": [(-75.61, 37.681)]})
"""

from .cells import ExportReport, export
from .fewshot import fewshot
from .search import CellSet, open

__all__ = ["CellSet", "ExportReport", "export", "fewshot", "open"]
