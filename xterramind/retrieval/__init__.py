"""Embeddings as a product: pooled-cell export to GeoParquet, a nearest-neighbour index, similarity
search and few-shot mapping.

    >>> report = embeddings.terramind.export("virginia-cells", cell=224)     # GeoParquet parts + an index
    >>> cells = xterramind.retrieval.open("virginia-cells")
    >>> cells.similar((-75.80, 37.62), k=10)                                  # a GeoDataFrame of hits
    >>> labels = embeddings.terramind.fewshot({"water": [(-75.85, 37.60)], "marsh": [(-75.70, 37.66)]})
"""

from .cells import ExportReport, export
from .fewshot import fewshot
from .search import CellSet, open

__all__ = ["CellSet", "ExportReport", "export", "fewshot", "open"]
