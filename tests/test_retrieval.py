"""Embeddings as a product: GeoParquet cells, nearest-neighbour search, int8, few-shot mapping, CLI."""

import json

import geopandas
import numpy as np
import pytest
import shapely
import xarray as xr

import xterramind
from xterramind import retrieval
from xterramind.cli import main
from xterramind.errors import InputError
from xterramind.retrieval import cells as export_module
from xterramind.retrieval.index import VectorIndex, normalized


@pytest.fixture(scope="module")
def embeddings():
    model = xterramind.load_model("terramind_v1_tiny", weights="random", device="cpu", precision="fp32")
    return xterramind.open_sample().terramind.embed(model).compute().chunk({"y": 12, "x": 12})


@pytest.fixture(scope="module")
def cells(embeddings, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "cells"
    embeddings.terramind.export(path, cell=32)
    return retrieval.open(path)


def test_cells_are_pooled_tokens_with_their_footprints(embeddings, cells):
    assert len(cells) == 15 * 15
    table = geopandas.read_parquet(cells.folder / cells.parts[0])
    assert table.crs == embeddings.rio.crs
    assert {"cell_id", "lon", "lat", "time", "valid_fraction", "model", "weights", "embedding", "geometry"} <= set(table.columns)
    row = cells.rows([37]).iloc[0]
    r, c = int(row["row"]), int(row["col"])
    # the footprint is exactly the 2 x 2 tokens of the zarr grid it pools
    tokens = embeddings.isel(y=slice(2 * r, 2 * r + 2), x=slice(2 * c, 2 * c + 2))
    half = 80.0  # half a 160 m token
    expected = shapely.box(float(tokens.x.min()) - half, float(tokens.y.min()) - half,
                           float(tokens.x.max()) + half, float(tokens.y.max()) + half)
    assert row.geometry.equals(expected)
    np.testing.assert_allclose(cells.vectors([37])[0], tokens.mean(("y", "x")).values, rtol=1e-5, atol=1e-6)
    assert row["valid_fraction"] == 1.0 and row["model"] == "terramind_v1_tiny" and row["weights"] == "random"
    assert np.allclose((row["lon"], row["lat"]), (-75.6, 37.67), atol=0.05)


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_a_cells_own_location_finds_it_first(cells, kind):
    cells.build_index(kind)
    for row_id in (0, 37, 112, 224):
        row = cells.rows([row_id]).iloc[0]
        hits = cells.similar((row["lon"], row["lat"]), k=5)
        assert hits.iloc[0]["cell_id"] == row["cell_id"] and hits.iloc[0]["score"] == pytest.approx(1.0, abs=2e-2)
        assert list(hits["rank"]) == [1, 2, 3, 4, 5] and (np.diff(hits["score"]) <= 1e-6).all()
    projected = cells.rows([37]).iloc[0]
    centre = projected.geometry.centroid
    assert cells.similar((centre.x, centre.y), k=1, crs=cells.meta["crs"]).iloc[0]["cell_id"] == projected["cell_id"]
    cells.build_index("auto")


def test_queries_by_area_and_by_vector(cells):
    west, south, east, north = cells.meta["lonlat_bounds"]
    box = (west, south, west + (east - west) / 4, south + (north - south) / 4)
    by_box = cells.similar(box, k=3)
    by_polygon = cells.similar(shapely.box(*box), k=3)
    assert list(by_box["cell_id"]) == list(by_polygon["cell_id"])
    vector = cells.vectors([5])[0]
    assert cells.similar(vector, k=1).iloc[0]["cell_id"] == cells.rows([5]).iloc[0]["cell_id"]
    with pytest.raises(InputError, match="no exported cell"):
        cells.similar((10.0, 50.0))
    with pytest.raises(InputError, match="query must be"):
        cells.similar((1.0, 2.0, 3.0))


def test_int8_export_keeps_recall_at_10_above_095(embeddings, tmp_path):
    full = retrieval.open(embeddings.terramind.export(tmp_path / "f32", cell=16).path)
    small = retrieval.open(embeddings.terramind.export(tmp_path / "i8", cell=16, quantize="int8").path)
    assert small.meta["quantize"] == "int8"
    table = geopandas.read_parquet(small.folder / small.parts[0])
    assert table["embedding"].iloc[0].dtype == np.int8 and "scale" in table
    queries = np.concatenate(list(full.vector_batches()))
    exact, approximate = full.index.search(queries, 10)[1], small.index.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approximate, strict=True)])
    assert recall >= 0.95
    sizes = [sum(p.stat().st_size for p in folder.glob("part-*")) for folder in (full.folder, small.folder)]
    assert sizes[1] < 0.5 * sizes[0]


def test_the_table_is_written_in_parts_never_whole(embeddings, tmp_path, monkeypatch):
    """One part per chunk of cells; no part holds more than its own chunk."""
    seen = []
    original = export_module._write_part

    def counting(block, **kwargs):
        rows = original(block, **kwargs)
        seen.append((block.shape, rows))
        return rows

    monkeypatch.setattr(export_module, "_write_part", counting)
    report = embeddings.terramind.export(tmp_path / "parts", cell=32)
    assert report.parts == len(seen) == 9 and report.rows == 225  # 30 x 30 tokens in 12-token chunks
    assert max(rows for _, rows in seen) <= 36 < report.rows
    meta = json.loads((tmp_path / "parts" / "_export.json").read_text())
    assert sum(count for _, count in meta["parts"]) == 225


def test_time_series_and_nodata_cells(embeddings, tmp_path):
    stack = xr.concat([embeddings, embeddings], dim="time").assign_coords(
        time=np.array(["2024-06-01", "2024-07-01"], dtype="datetime64[ns]"))
    holed = stack.where(stack.y > stack.y[-4])  # the last 4 token rows (the southern edge) are nodata
    retrieval.export(holed, tmp_path / "series", cell=32, index=None)
    table = geopandas.read_parquet(tmp_path / "series")
    assert sorted(table["time"].unique()) == ["2024-06-01T00:00:00", "2024-07-01T00:00:00"]
    assert len(table) == 2 * 15 * 13 and table["valid_fraction"].min() == 1.0


def test_fewshot_maps_one_example_per_class(embeddings):
    left, right = embeddings.isel(y=3, x=4), embeddings.isel(y=20, x=25)
    points = {"west": [(float(left.x), float(left.y))], "east": [(float(right.x), float(right.y))]}
    mapped = embeddings.terramind.fewshot(points, crs=embeddings.rio.crs.to_wkt()).compute()
    assert mapped.attrs["labels"] == ["west", "east"] and mapped.label.dtype == np.int16
    assert int(mapped.label[3, 4]) == 0 and int(mapped.label[20, 25]) == 1
    assert float(mapped.similarity[3, 4]) == pytest.approx(1.0, abs=1e-5)
    assert set(np.unique(mapped.label.values)) == {0, 1}
    polygon = shapely.box(float(left.x) - 100, float(left.y) - 100, float(left.x) + 400, float(left.y) + 100)
    by_polygon = embeddings.terramind.fewshot({"west": [polygon], "east": points["east"]}, crs=embeddings.rio.crs.to_wkt())
    assert by_polygon.attrs["shots"] == {"west": 1, "east": 1} and int(by_polygon.label[20, 25].values) == 1
    holed = embeddings.where(embeddings.y < embeddings.y[2]).chunk({"y": 12, "x": 12})  # rows 0-2 nodata
    assert int(holed.terramind.fewshot(points, crs=embeddings.rio.crs.to_wkt()).label[0, 0].values) == -1
    with pytest.raises(InputError, match="at least two labels"):
        embeddings.terramind.fewshot({"only": [(0.0, 0.0)]})
    with pytest.raises(InputError, match="falls on the embeddings' grid"):
        embeddings.terramind.fewshot({"a": [(10.0, 50.0)], "b": [(11.0, 50.0)]})


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


def test_export_and_open_refuse_bad_input(embeddings, tmp_path):
    with pytest.raises(InputError, match="multiple of the 16-px token"):
        embeddings.terramind.export(tmp_path / "a", cell=100)
    with pytest.raises(InputError, match="quantize"):
        embeddings.terramind.export(tmp_path / "b", quantize="int4")
    (tmp_path / "c").mkdir()
    with pytest.raises(InputError, match="exists"):
        embeddings.terramind.export(tmp_path / "c")
    with pytest.raises(InputError, match="not an xterramind cell export"):
        retrieval.open(tmp_path / "c")
    with pytest.raises(InputError, match="all NaN"):
        (embeddings * np.nan).terramind.export(tmp_path / "d")


def test_command_line_export_and_search(embeddings, tmp_path, capsys):
    embeddings.to_dataset().to_zarr(tmp_path / "emb.zarr", zarr_format=2)
    assert main(["export", str(tmp_path / "emb.zarr"), str(tmp_path / "cells"), "--cell", "32"]) == 0
    assert "225 cells" in capsys.readouterr().out
    row = retrieval.open(tmp_path / "cells").rows([40]).iloc[0]
    assert main(["search", str(tmp_path / "cells"), "--lonlat", str(row["lon"]), str(row["lat"]), "-k", "3"]) == 0
    printed = capsys.readouterr().out
    assert row["cell_id"] in printed.splitlines()[1] and "score" in printed
    assert main(["search", str(tmp_path / "nowhere"), "--lonlat", "0", "0"]) == 1
    assert "not an xterramind cell export" in capsys.readouterr().err


def test_an_ivf_index_asked_for_too_few_cells_is_exact_with_a_warning(embeddings, tmp_path):
    from xterramind.errors import InputWarning

    with pytest.warns(InputWarning, match="too few for an ivf index"):
        embeddings.terramind.export(tmp_path / "cells", cell=32, index="ivf")
    cells = xterramind.retrieval.open(tmp_path / "cells")
    assert cells.similar((-75.62, 37.67), k=3)["rank"].tolist() == [1, 2, 3]
    assert (tmp_path / "cells" / "_vectors.npy").exists() and not (tmp_path / "cells" / "_index.faiss").exists()
