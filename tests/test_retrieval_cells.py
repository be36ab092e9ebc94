"""Export (``xterramind.retrieval.cells``): embeddings pooled into cells, written to GeoParquet part by part, with
their footprints, int8 vectors, dates and nodata; and what an export refuses."""

import json

import geopandas
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
import torch
import xarray as xr

import xterramind
from xterramind import retrieval
from xterramind.embed import INT8_DECODING, INT8_NODATA, SCALE, stored
from xterramind.errors import InputError, NoValidDataError, OptionError, StoreError, StoreExistsError
from xterramind.retrieval import cells as export_module


def test_cells_are_pooled_tokens_with_their_footprints(sample_embeddings, cell_export):
    embeddings, cells = sample_embeddings, cell_export
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


def test_int8_export_keeps_recall_at_10_above_095(sample_embeddings, tmp_path):
    full = retrieval.open(sample_embeddings.terramind.export(tmp_path / "f32", cell=16).path)
    small = retrieval.open(sample_embeddings.terramind.export(tmp_path / "i8", cell=16, quantize="int8").path)
    assert small.meta["quantize"] == "int8"
    table = geopandas.read_parquet(small.folder / small.parts[0])
    assert table["embedding"].iloc[0].dtype == np.int8 and table[SCALE].dtype == np.float32 and "scale" not in table
    queries = np.concatenate(list(full.vector_batches()))
    exact, approximate = full.index.search(queries, 10)[1], small.index.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approximate, strict=True)])
    assert recall >= 0.95
    sizes = [sum(p.stat().st_size for p in folder.glob("part-*")) for folder in (full.folder, small.folder)]
    assert sizes[1] < 0.5 * sizes[0]


def test_int8_cells_hold_what_an_int8_zarr_store_holds_for_the_same_vectors(cube, micro, tmp_path):
    """One-token cells (16 px): each cell's vector is its token's, so its codes and scale are the store's own."""
    cube.terramind.embed(micro, dtype="int8", chunks=12).terramind.to_zarr(tmp_path / "int8.zarr")
    store = xterramind.open(tmp_path / "int8.zarr")
    retrieval.export(cube.terramind.embed(micro, chunks=12), tmp_path / "cells", cell=16, quantize="int8", index=None)
    table = geopandas.read_parquet(tmp_path / "cells")
    assert len(table) == store.sizes["y"] * store.sizes["x"] == 30 * 30
    rows, cols = xr.DataArray(table["row"].to_numpy(), dims="cell"), xr.DataArray(table["col"].to_numpy(), dims="cell")
    codes = store["embeddings"].isel(y=rows, x=cols).transpose("cell", "embedding").values
    np.testing.assert_array_equal(np.stack(table["embedding"]), codes)
    np.testing.assert_array_equal(table[SCALE].to_numpy(), store[SCALE].isel(y=rows, x=cols).values)


def test_int8_cells_are_pooled_vectors_encoded_by_embed_stored(sample_embeddings, tmp_path):
    """Cells of 2 x 2 tokens: the int8 columns are ``embed.stored`` of the float32 export's vectors, value for value."""
    retrieval.export(sample_embeddings, tmp_path / "f32", cell=32, index=None)
    retrieval.export(sample_embeddings, tmp_path / "i8", cell=32, quantize="int8", index=None)
    floats, ints = geopandas.read_parquet(tmp_path / "f32"), geopandas.read_parquet(tmp_path / "i8")
    assert list(floats["cell_id"]) == list(ints["cell_id"])
    vectors = np.stack(floats["embedding"])  # (cells, dim), float32
    as_stored = stored(torch.from_numpy(vectors).T[None, :, None, :], "int8")  # one tile row of cells, as embed has it
    np.testing.assert_array_equal(np.stack(ints["embedding"]), as_stored["embeddings"][0, :, 0].T.numpy())
    np.testing.assert_array_equal(ints[SCALE].to_numpy(), as_stored[SCALE][0, 0].numpy())
    unit = np.stack(ints["embedding"]) / 127.0
    np.testing.assert_allclose((unit**4).sum(axis=1), 1.0, atol=0.01)  # codes of unit vectors, square-root companded


def test_the_formula_in_a_parts_metadata_decodes_its_rows_as_xterramind_does(sample_embeddings, tmp_path):
    cells = retrieval.open(retrieval.export(sample_embeddings, tmp_path / "i8", cell=32, quantize="int8").path)
    part = cells.folder / cells.parts[1]
    keys = pq.read_schema(part).metadata
    assert b"geo" in keys and json.loads(keys[b"geo"])["primary_column"] == "geometry"  # still GeoParquet
    encoding = json.loads(keys[b"xterramind"])["embedding"]
    assert encoding == cells.meta["encoding"]  # the export's json says the same
    assert (encoding["decoding"], encoding["nodata"]) == (INT8_DECODING, INT8_NODATA)
    assert encoding["decoding"] == "sign(q) * (q / 127)**2 * embeddings_scale"
    table = geopandas.read_parquet(part)
    first = cells.meta["parts"][0][1]  # the rows before this part
    for i in (0, 5, len(table) - 1):
        names = {name: np.asarray(table[column].iloc[i]) for name, column in encoding["variables"].items()}
        vector = eval(encoding["decoding"], {"__builtins__": {}, "sign": np.sign}, names)  # the documented text
        np.testing.assert_allclose(vector, cells.vectors([first + i])[0], rtol=1e-6, atol=0)
        assert INT8_NODATA not in names["q"]  # a written cell always has its vector


def test_the_table_is_written_in_parts_never_whole(sample_embeddings, tmp_path, monkeypatch):
    """One part per chunk of cells; no part holds more than its own chunk."""
    seen = []
    original = export_module._write_part

    def counting(*args, **kwargs):
        rows = original(*args, **kwargs)
        seen.append(rows)
        return rows

    monkeypatch.setattr(export_module, "_write_part", counting)
    report = sample_embeddings.terramind.export(tmp_path / "parts", cell=32)
    assert report.parts == len(seen) == 9 and report.rows == 225  # 30 x 30 tokens in 12-token chunks
    assert max(seen) <= 36 < report.rows
    meta = json.loads((tmp_path / "parts" / "_export.json").read_text())
    assert sum(count for _, count in meta["parts"]) == 225


def test_time_series_and_nodata_cells(sample_embeddings, tmp_path):
    stack = xr.concat([sample_embeddings, sample_embeddings], dim="time").assign_coords(
        time=np.array(["2024-06-01", "2024-07-01"], dtype="datetime64[ns]"))
    holed = stack.where(stack.y > stack.y[-4])  # the last 4 token rows (the southern edge) are nodata
    retrieval.export(holed, tmp_path / "series", cell=32, index=None)
    table = geopandas.read_parquet(tmp_path / "series")
    assert sorted(table["time"].unique()) == ["2024-06-01T00:00:00", "2024-07-01T00:00:00"]
    assert len(table) == 2 * 15 * 13 and table["valid_fraction"].min() == 1.0


@pytest.mark.parametrize(("options", "match"), [
    ({"cell": 100}, "multiple of the 16-px token"), ({"cell": 0}, "multiple of the 16-px token"),
    ({"cell": "224"}, "cell must be a whole number"), ({"cell": 224.0}, "cell must be a whole number"),
    ({"quantize": "int4"}, "quantize must be None or 'int8'"), ({"index": "hnsw"}, "index must be 'auto', 'exact' or 'ivf'"),
])
def test_a_bad_option_is_an_option_error_naming_it(sample_embeddings, tmp_path, options, match):
    with pytest.raises(OptionError, match=match):
        retrieval.export(sample_embeddings, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_an_existing_folder_is_a_store_exists_error_and_overwrite_replaces_only_an_export(sample_embeddings, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(StoreExistsError, match=r"exists; pass overwrite=True to replace it"):
        sample_embeddings.terramind.export(tmp_path / "taken")
    report = sample_embeddings.terramind.export(tmp_path / "taken", cell=32, overwrite=True)  # an empty folder goes
    again = sample_embeddings.terramind.export(tmp_path / "taken", cell=64, overwrite=True)  # so does an export
    assert (report.rows, again.rows) == (225, 64) and retrieval.open(tmp_path / "taken").meta["cell"] == 64
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="did not write"):
        sample_embeddings.terramind.export(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_an_export_of_no_valid_cell_is_a_no_valid_data_error(sample_embeddings, tmp_path):
    with pytest.raises(NoValidDataError, match="all NaN"):
        (sample_embeddings * np.nan).terramind.export(tmp_path / "d")


def test_what_is_not_embeddings_is_refused(sample_embeddings, tmp_path):
    with pytest.raises(InputError, match="takes the embeddings DataArray"):
        retrieval.export(sample_embeddings.to_dataset(), tmp_path / "e")
    with pytest.raises(InputError, match="takes the embeddings DataArray"):
        retrieval.export(sample_embeddings.isel(embedding=0), tmp_path / "e")
