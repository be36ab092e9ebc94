"""Few-shot mapping (``xterramind.retrieval.fewshot``): every token labelled by its nearest class centroid."""

import numpy as np
import pytest
import shapely

from xterramind.errors import InputError, NoValidDataError
from xterramind.retrieval.fewshot import NO_LABEL


def _two_points(embeddings):
    left, right = embeddings.isel(y=3, x=4), embeddings.isel(y=20, x=25)
    return {"west": [(float(left.x), float(left.y))], "east": [(float(right.x), float(right.y))]}


def test_fewshot_maps_one_example_per_class(sample_embeddings):
    embeddings, crs = sample_embeddings, sample_embeddings.rio.crs.to_wkt()
    points = _two_points(embeddings)
    mapped = embeddings.terramind.fewshot(points, crs=crs).compute()
    assert mapped.attrs["labels"] == ["west", "east"] and mapped.label.dtype == np.int16
    assert int(mapped.label[3, 4]) == 0 and int(mapped.label[20, 25]) == 1
    assert float(mapped.similarity[3, 4]) == pytest.approx(1.0, abs=1e-5)
    assert set(np.unique(mapped.label.values)) == {0, 1}
    (x, y), = points["west"]
    polygon = shapely.box(x - 100, y - 100, x + 400, y + 100)
    by_polygon = embeddings.terramind.fewshot({"west": [polygon], "east": points["east"]}, crs=crs)
    assert by_polygon.attrs["shots"] == {"west": 1, "east": 1} and int(by_polygon.label[20, 25].values) == 1
    holed = embeddings.where(embeddings.y < embeddings.y[2]).chunk({"y": 12, "x": 12})  # rows 0-2 nodata
    assert int(holed.terramind.fewshot(points, crs=crs).label[0, 0].values) == NO_LABEL


def test_bad_examples_are_refused_before_any_compute(sample_embeddings):
    with pytest.raises(InputError, match="at least two labels"):
        sample_embeddings.terramind.fewshot({"only": [(0.0, 0.0)]})
    with pytest.raises(InputError, match="has no example place"):
        sample_embeddings.terramind.fewshot({"a": [(0.0, 0.0)], "b": []})
    with pytest.raises(InputError, match="falls on the embeddings' grid"):
        sample_embeddings.terramind.fewshot({"a": [(10.0, 50.0)], "b": [(11.0, 50.0)]})
    with pytest.raises(InputError, match="one date"):
        sample_embeddings.expand_dims(time=2).terramind.fewshot(_two_points(sample_embeddings))


def test_examples_only_where_the_embedding_is_nan_are_a_no_valid_data_error(sample_embeddings):
    holed = sample_embeddings.where(sample_embeddings.y < sample_embeddings.y[5])  # rows 0-5 nodata
    with pytest.raises(NoValidDataError, match="every example of 'west' lies where the embedding is NaN"):
        holed.terramind.fewshot(_two_points(sample_embeddings), crs=sample_embeddings.rio.crs.to_wkt())


def test_fewshot_maps_int8_and_float16_embeddings_as_their_float32(cube, micro):
    exact = cube.terramind.embed(micro)
    points, crs = _two_points(exact), exact.rio.crs.to_wkt()
    expected = exact.terramind.fewshot(points, crs=crs).compute()
    # a cosine moves by at most the distances of both unit vectors from their float32 ones (each ~0.01 for int8)
    for dtype, atol in (("int8", 0.02), ("float16", 1e-4)):
        mapped = cube.terramind.embed(micro, dtype=dtype).terramind.fewshot(points, crs=crs).compute()
        assert int(mapped.label[3, 4]) == 0 and int(mapped.label[20, 25]) == 1
        assert (mapped.label.values == expected.label.values).mean() > 0.99
        np.testing.assert_allclose(mapped.similarity.values, expected.similarity.values, atol=atol)
