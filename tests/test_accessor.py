"""The ``.terramind`` accessor (``xterramind.accessor``): registered on Datasets and DataArrays by ``import xterramind``,
a thin facade whose methods are the library's functions, with their keywords checked."""

import geopandas
import numpy as np
import pytest
import xarray as xr

import xterramind
from xterramind import retrieval
from xterramind.errors import OptionError


def test_import_registers_the_accessor_on_datasets_and_data_arrays(cube):
    assert type(cube.terramind).__name__ == type(cube.to_dataset("band").terramind).__name__
    for verb in ("embed", "generate", "tokenize", "detokenize", "to_zarr", "export", "fewshot", "plot"):
        assert callable(getattr(cube.terramind, verb)), verb
    assert isinstance(xr.DataArray(np.zeros((2, 2)), dims=("y", "x")).terramind, type(cube.terramind))


@pytest.mark.parametrize(("method", "mistake", "nearest"), [("to_zarr", "overwrte", "overwrite"),
                                                            ("to_zarr", "zarr_formt", "zarr_format"),
                                                            ("export", "quantise", "quantize"),
                                                            ("fewshot", "crss", "crs")])
def test_methods_with_a_fixed_signature_name_the_nearest_keyword_too(micro, cube, tmp_path, method, mistake, nearest):
    embeddings = cube.terramind.embed(micro)
    with pytest.raises(OptionError, match=rf"{method} got an unknown option '{mistake}' \(did you mean '{nearest}'\?\)"):
        getattr(embeddings.terramind, method)(tmp_path / "out" if method != "fewshot" else {}, **{mistake: 1})
    assert not (tmp_path / "out").exists()


def test_export_and_fewshot_through_the_accessor_are_the_retrieval_functions(sample_embeddings, tmp_path):
    sample_embeddings.terramind.export(tmp_path / "a", cell=64, index=None)
    retrieval.export(sample_embeddings, tmp_path / "b", cell=64, index=None)
    a, b = (geopandas.read_parquet(tmp_path / name) for name in ("a", "b"))
    assert len(a) == 64 and a.drop(columns="embedding").equals(b.drop(columns="embedding"))
    np.testing.assert_array_equal(np.stack(a["embedding"]), np.stack(b["embedding"]))
    points = {"a": [(-75.63, 37.66)], "b": [(-75.61, 37.68)]}
    xr.testing.assert_identical(sample_embeddings.terramind.fewshot(points).compute(),
                                xterramind.retrieval.fewshot(sample_embeddings, points).compute())
