"""Nearest-neighbour indexes (``xterramind.retrieval.index``): exact and faiss IVF over unit vectors."""

import numpy as np
import pytest

import xterramind
from xterramind.errors import InputWarning, OptionError
from xterramind.retrieval.index import VectorIndex, normalized


def test_vector_index_recall_on_clustered_vectors(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 64)).astype(np.float32)
    vectors = normalized(centres[rng.integers(0, 200, 20_000)] + 0.5 * rng.normal(size=(20_000, 64)).astype(np.float32))
    batches = lambda: (vectors[i : i + 5000] for i in range(0, len(vectors), 5000))  # noqa: E731
    exact = VectorIndex.build(batches, len(vectors), 64, tmp_path, "exact")
    approximate = VectorIndex.build(batches, len(vectors), 64, tmp_path, "ivf")
    queries = vectors[:300]
    truth, found = exact.search(queries, 10)[1], approximate.search(queries, 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found, strict=True)]) >= 0.95
    assert (truth[:, 0] == np.arange(300)).all()
    reloaded = VectorIndex.load(tmp_path)
    assert reloaded.kind == "ivf" and (reloaded.search(queries, 10)[1] == found).all()


def test_normalized_vectors_have_unit_length_and_zeros_stay_zero():
    vectors = normalized(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])
    assert vectors.dtype == np.float32


def test_exact_search_is_best_first_and_asks_no_more_than_there_are(tmp_path):
    vectors = normalized(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    index = VectorIndex.build(lambda: iter([vectors]), 3, 2, tmp_path, "auto")
    scores, ids = index.search(np.array([1.0, 0.1]), k=5)
    assert index.kind == "exact" and ids.tolist() == [[0, 1, 2]] and (np.diff(scores[0]) <= 0).all()


def test_an_unknown_kind_is_an_option_error(tmp_path):
    with pytest.raises(OptionError, match="index must be 'auto', 'exact' or 'ivf', got 'hnsw'"):
        VectorIndex.build(lambda: iter([np.ones((2, 2))]), 2, 2, tmp_path, "hnsw")


def test_an_ivf_index_asked_for_too_few_cells_is_exact_with_a_warning(sample_embeddings, tmp_path):
    with pytest.warns(InputWarning, match="too few for an ivf index"):
        sample_embeddings.terramind.export(tmp_path / "cells", cell=32, index="ivf")
    cells = xterramind.retrieval.open(tmp_path / "cells")
    assert cells.similar((-75.62, 37.67), k=3)["rank"].tolist() == [1, 2, 3]
    assert (tmp_path / "cells" / "_vectors.npy").exists() and not (tmp_path / "cells" / "_index.faiss").exists()
