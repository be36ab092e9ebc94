"""A cell export opened (``xterramind.retrieval.search``): its rows, vectors and cells by place, similarity
search by point, box, polygon or vector, and what ``open`` and ``similar`` refuse."""

import json

import numpy as np
import pytest
import shapely

from xterramind import retrieval
from xterramind.errors import ForeignStoreError, InputError, OptionError, StoreError
from xterramind.retrieval.search import META


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_a_cells_own_location_finds_it_first(cell_export, kind):
    cells = cell_export
    cells.build_index(kind)
    try:
        for row_id in (0, 37, 112, 224):
            row = cells.rows([row_id]).iloc[0]
            hits = cells.similar((row["lon"], row["lat"]), k=5)
            assert hits.iloc[0]["cell_id"] == row["cell_id"] and hits.iloc[0]["score"] == pytest.approx(1.0, abs=2e-2)
            assert list(hits["rank"]) == [1, 2, 3, 4, 5] and (np.diff(hits["score"]) <= 1e-6).all()
        projected = cells.rows([37]).iloc[0]
        centre = projected.geometry.centroid
        assert cells.similar((centre.x, centre.y), k=1, crs=cells.meta["crs"]).iloc[0]["cell_id"] == projected["cell_id"]
    finally:
        cells.build_index("auto")  # the shared export as it was


@pytest.mark.parametrize(("kind", "cell"), [("exact", 32), ("ivf", 16)])  # ivf needs 624 cells or more
def test_an_int8_export_finds_a_cells_own_location_first(sample_embeddings, tmp_path, kind, cell):
    cells = retrieval.open(sample_embeddings.terramind.export(tmp_path / "i8", cell=cell, quantize="int8").path)
    floats = retrieval.open(sample_embeddings.terramind.export(tmp_path / "f32", cell=cell).path)
    cells.build_index(kind)
    assert cells.index.kind == kind
    for row_id in (0, 37, 112, len(cells) - 1):
        row = cells.rows([row_id]).iloc[0]
        hits = cells.similar((row["lon"], row["lat"]), k=5)
        assert hits.iloc[0]["cell_id"] == row["cell_id"] and hits.iloc[0]["score"] == pytest.approx(1.0, abs=2e-2)
        assert list(hits["cell_id"])[:2] == list(floats.similar((row["lon"], row["lat"]), k=5)["cell_id"])[:2]
    every = range(len(cells))
    cosine = [np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
              for a, b in zip(cells.vectors(every), floats.vectors(every), strict=True)]
    assert min(cosine) > 0.9998


def test_an_int8_export_in_an_earlier_encoding_is_refused_with_the_fix(sample_embeddings, tmp_path):
    folder = tmp_path / "i8"
    retrieval.export(sample_embeddings, folder, cell=64, quantize="int8", index=None)
    meta = json.loads((folder / META).read_text())
    del meta["encoding"]  # as the linear-scale exports wrote it
    (folder / META).write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"another encoding than .*export the embeddings again"):
        retrieval.open(folder)


def test_queries_by_area_and_by_vector(cell_export):
    cells = cell_export
    west, south, east, north = cells.meta["lonlat_bounds"]
    box = (west, south, west + (east - west) / 4, south + (north - south) / 4)
    by_box = cells.similar(box, k=3)
    by_polygon = cells.similar(shapely.box(*box), k=3)
    by_geojson = cells.similar(shapely.geometry.mapping(shapely.box(*box)), k=3)
    assert list(by_box["cell_id"]) == list(by_polygon["cell_id"]) == list(by_geojson["cell_id"])
    vector = cells.vectors([5])[0]
    assert cells.similar(vector, k=1).iloc[0]["cell_id"] == cells.rows([5]).iloc[0]["cell_id"]
    with pytest.raises(InputError, match="no exported cell"):
        cells.similar((10.0, 50.0))
    with pytest.raises(InputError, match="query must be"):
        cells.similar((1.0, 2.0, 3.0))


def test_rows_and_vectors_come_back_in_the_order_asked(cell_export):
    ids = [200, 3, 41, 3]
    rows = cell_export.rows(ids)
    assert list(rows.index) == [0, 1, 2, 3] and rows["cell_id"].iloc[1] == rows["cell_id"].iloc[3]
    vectors = cell_export.vectors(ids)
    np.testing.assert_array_equal(vectors[1], vectors[3])
    assert vectors.shape == (4, cell_export.meta["dim"]) and not np.array_equal(vectors[0], vectors[1])
    inside = cell_export.cells_in(rows.geometry.iloc[2].centroid)
    assert list(inside) == [41]


@pytest.mark.parametrize(("k", "match"), [(0, "k must be at least 1, got 0"), (-3, "k must be at least 1"),
                                          (2.5, "k must be a whole number"), ("3", "k must be a whole number"),
                                          (True, "k must be a whole number")])
def test_k_that_is_not_a_whole_number_of_at_least_one_is_an_option_error(cell_export, k, match):
    with pytest.raises(OptionError, match=match):
        cell_export.similar((-75.62, 37.67), k=k)


def test_open_tells_nothing_there_from_a_folder_of_something_else(tmp_path):
    with pytest.raises(InputError, match="not an xterramind cell export") as nothing:
        retrieval.open(tmp_path / "nowhere")
    assert not isinstance(nothing.value, StoreError)
    (tmp_path / "plain").mkdir()
    for holds in ("plain", "file.txt"):
        if holds == "file.txt":
            (tmp_path / holds).write_text("mine")
        with pytest.raises(ForeignStoreError, match=rf"not an xterramind cell export \(no {META}\)"):
            retrieval.open(tmp_path / holds)


def test_an_export_without_an_index_says_how_to_build_one(sample_embeddings, tmp_path):
    cells = retrieval.open(retrieval.export(sample_embeddings, tmp_path / "cells", cell=64, index=None).path)
    assert not (tmp_path / "cells" / "_index.json").exists()
    with pytest.raises(InputError, match=r"no index yet: cells.build_index\(\)"):
        cells.similar((-75.62, 37.67))
    cells.build_index()
    assert cells.similar((-75.62, 37.67), k=2)["rank"].tolist() == [1, 2]


def test_an_int8_embeddings_store_is_exported_and_searched(cube, micro, tmp_path):
    """embed(dtype="int8") -> zarr -> xterramind.open -> export -> similar: the codes are decoded on the way."""
    import xterramind

    cube.terramind.embed(micro, dtype="int8", chunks=12).terramind.to_zarr(tmp_path / "int8.zarr")
    stored = xterramind.open(tmp_path / "int8.zarr")
    assert stored["embeddings"].dtype == np.int8
    cells = retrieval.open(stored.terramind.export(tmp_path / "cells", cell=32).path)
    exact = retrieval.open(cube.terramind.embed(micro, chunks=12).terramind.export(tmp_path / "exact", cell=32).path)
    assert len(cells) == len(exact) == 15 * 15 and cells.meta["dim"] == 64
    ids = [0, 37, 224]
    assert np.abs(cells.vectors(ids) - exact.vectors(ids)).max() <= 0.008 * np.linalg.norm(exact.vectors(ids), axis=1).max()
    for row_id in ids:
        row = cells.rows([row_id]).iloc[0]
        hits = cells.similar((row["lon"], row["lat"]), k=5)
        assert hits.iloc[0]["cell_id"] == row["cell_id"] and hits.iloc[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert list(hits["cell_id"])[:3] == list(exact.similar((row["lon"], row["lat"]), k=5)["cell_id"])[:3]
