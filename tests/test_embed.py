"""The ``embed`` verb on the bundled real scene: laziness, chunk invariance, georeferencing, nodata, time, several
modalities, Thinking-in-Modalities, and its options."""

import numpy as np
import pytest
import rioxarray  # noqa: F401
import torch
import xarray as xr

import xterramind
from xterramind import embed
from xterramind.errors import InputError, OptionError
from xterramind.models import TerraMind
from xterramind.verb import TOKENS


@pytest.fixture(scope="module")
def tiny():
    return xterramind.load_model("terramind_v1_tiny", weights="random", device="cpu", precision="fp32")


@pytest.fixture
def forward_passes(monkeypatch):
    """Counts the model's forward passes in this process."""
    calls = []
    original = TerraMind.encode

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TerraMind, "encode", counting)
    return calls


def test_embed_is_lazy_and_writing_runs_the_model(cube, micro, forward_passes, tmp_path):
    result = cube.terramind.embed(micro)
    assert forward_passes == [] and isinstance(result.data, __import__("dask").array.Array)
    result.terramind.to_zarr(tmp_path / "out.zarr")
    assert len(forward_passes) >= 1


def test_result_is_the_same_for_any_chunking(cube, tiny):
    reference = cube.terramind.embed(tiny).values
    assert np.isfinite(reference).all()
    for input_chunks, output_chunks in (({"y": 240, "x": 240}, 6), ({"y": 100, "x": 77}, 7), ({"y": 480, "x": 480}, 30)):
        other = cube.chunk(input_chunks).terramind.embed(tiny, chunks=output_chunks).values
        np.testing.assert_allclose(other, reference, atol=1e-5, rtol=0)


def test_a_cube_of_exactly_one_tile_equals_a_direct_encode(cube, tiny):
    tile = cube.isel(y=slice(16, 240), x=slice(32, 256))
    result = tile.terramind.embed(tiny).values
    pixels = torch.from_numpy(tile.values.astype(np.float32))[None]
    from xterramind.modalities import resolve

    order = [list(tile["band"].values).index(b) for b in resolve(tile)[0].spec.bands]
    direct = tiny.encode({"S2L1C": tiny.normalize("S2L1C", pixels[:, order])}, layers=-1)
    np.testing.assert_allclose(result, direct[0].T.reshape(192, 14, 14).numpy(), atol=1e-5, rtol=0)


def test_output_grid_is_the_input_grid_coarsened_16_times(cube, micro):
    result = cube.terramind.embed(micro)
    assert result.dims == ("embedding", "y", "x") and result.name == "embeddings"
    assert result.rio.crs == cube.rio.crs
    source, out = cube.rio.transform(), result.rio.transform()
    assert (out.a, out.e, out.c, out.f) == (source.a * 16, source.e * 16, source.c, source.f)
    np.testing.assert_allclose(result.x.values[:2], source.c + source.a * 16 * np.array([0.5, 1.5]))
    attrs = result.attrs
    assert attrs["model"] == "terramind_micro" and attrs["weights"] == "random" and "random weights" in attrs["warning"]
    assert attrs["modalities"] == ["S2L1C"] and attrs["xterramind_version"] == xterramind.__version__
    assert {"tile_size", "overlap", "chunks", "layer", "seed"} <= set(attrs)


def test_nodata_tiles_are_skipped_and_empty_patches_are_nan(cube, micro, forward_passes):
    values = cube.values.copy()
    values[:, :224, :] = 0  # the top 14 token rows: nodata (0) in every band
    values[:, 300:308, 100:108] = 0  # one small hole: its token keeps other valid pixels
    holed = cube.copy(data=values).rio.write_nodata(0).chunk({"y": 240, "x": 240})
    result = holed.terramind.embed(micro, chunks=12).values
    assert np.isnan(result[:, :14]).all() and np.isfinite(result[:, 14:]).all()
    full = cube.terramind.embed(micro, chunks=12)
    forward_passes.clear()
    _ = full.values
    every = len(forward_passes)
    forward_passes.clear()
    _ = holed.terramind.embed(micro, chunks=12).values
    assert len(forward_passes) < every  # the regions of nodata-only tiles ran no batch


def test_time_steps_are_embedded_independently(cube, micro):
    stack = xr.concat([cube, cube.isel(band=slice(None)).astype("float32") * 1.1], dim="time")
    stack = stack.assign_coords(time=np.array(["2024-06-01", "2024-07-01"], dtype="datetime64[ns]"))
    result = stack.terramind.embed(micro)
    assert result.dims == ("time", "embedding", "y", "x") and result.sizes["time"] == 2
    np.testing.assert_allclose(result.isel(time=0).values, cube.terramind.embed(micro).values, atol=1e-5)
    assert not np.allclose(result.isel(time=1).values, result.isel(time=0).values)


def test_datasets_with_earth_search_names_match_dataarrays(cube, micro):
    names = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
             "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}
    dataset = xr.Dataset({alias: cube.sel(band=band, drop=True) for band, alias in reversed(names.items())})
    dataset = dataset.rio.write_crs(cube.rio.crs)
    result = dataset.terramind.embed(micro)
    assert result.attrs["modalities"] == ["S2L2A"]  # no B10 (cirrus): L2A
    expected = cube.drop_sel(band="B10").terramind.embed(micro)
    np.testing.assert_allclose(result.values, expected.values, atol=1e-5)


def test_a_second_modality_from_another_cube_on_the_same_grid(cube, micro):
    s1 = xr.DataArray(
        np.random.default_rng(0).normal(-15, 3, (2, 480, 480)).astype("float32"),
        coords={"band": ["vv", "vh"], "y": cube.y, "x": cube.x}, dims=("band", "y", "x"),
    ).rio.write_crs(cube.rio.crs)
    both = cube.terramind.embed(micro, modalities={"S2L1C": None, "S1GRD": s1}, merge="concat")
    assert both.sizes["embedding"] == 128 and both.attrs["modalities"] == ["S2L1C", "S1GRD"]
    assert np.isfinite(both.values).all()


def test_merge_and_layer_options(cube, micro):
    last = cube.terramind.embed(micro, layer=-1).values
    first = cube.terramind.embed(micro, layer=0).values
    assert not np.allclose(first, last)
    assert cube.terramind.embed(micro, layer=1).attrs["layer"] == 1


def test_thinking_in_modalities_adds_generated_lulc_to_the_embedding(cube, micro):
    plain = cube.terramind.embed(micro).values
    thinking = cube.terramind.embed(micro, tim=["LULC"], seed=5)
    assert thinking.attrs["tim"] == ["tok_LULC"] and thinking.attrs["seed"] == 5
    values = thinking.values
    assert not np.allclose(values, plain)
    np.testing.assert_array_equal(cube.terramind.embed(micro, tim=["LULC"], seed=5, chunks=7).values, values)
    assert not np.allclose(cube.terramind.embed(micro, tim=["LULC"], seed=6).values, values)


def test_prepare_declares_the_embed_verb_and_its_job(cube, micro):
    prepared = embed.prepare(cube, micro, merge="concat", tim=["LULC"], seed=4, layer=-2, chunks=7)
    assert prepared.verb is embed.EMBED and prepared.verb.stitch == TOKENS and not prepared.cover
    job = prepared.job
    assert (job.layer, job.merge, job.tim, job.seed) == (micro.config.encoder_depth - 2, "concat", ("tok_LULC",), 4)
    assert job.features == 2 * micro.config.dim and prepared.outputs == {"embeddings": (np.float32, (job.features,))}
    assert prepared.layout.region_size == 7 and job.tiles is prepared.layout.tiles
    assert embed.prepare(cube, micro).job.features == micro.config.dim and embed.prepare(cube, micro).job.tim == ()
    result = embed.embed(cube, micro, chunks=7)  # the lazy result: what the accessor gives
    assert result.data.chunks[-2:] == ((7, 7, 7, 7, 2), (7, 7, 7, 7, 2)) and result.attrs["merge"] == "mean"


@pytest.mark.parametrize("options, error, message", [
    ({"merge": "sum"}, InputError, "merge must be 'mean', 'max' or 'concat'"),
    ({"layer": 99}, InputError, "layer 99 does not exist: terramind_micro has"),
    ({"layer": -99}, InputError, "layer -99 does not exist"),
    ({"layer": 1.0}, OptionError, "layer must be a whole number"),
    ({"seed": "1"}, OptionError, "seed must be a whole number"),
    ({"tim": 3}, OptionError, "tim takes a name or a list of names"),
])
def test_bad_embed_options_are_refused_by_their_name(cube, micro, options, error, message):
    with pytest.raises(error, match=message):
        embed.prepare(cube, micro, **options)


def test_the_kernel_gives_each_tile_its_embedding_grid(cube, micro):
    prepared = embed.prepare(cube, micro, merge="concat")
    pixels = torch.from_numpy(cube.values[:, :224, :224].astype(np.float32))[None].repeat(2, 1, 1, 1)
    inputs = {"S2L1C": micro.normalize("S2L1C", pixels)}
    out = embed.kernel(prepared.job, micro, inputs, [None, None])
    assert set(out) == {"embeddings"} and out["embeddings"].shape == (2, prepared.job.features, 14, 14)
    torch.testing.assert_close(out["embeddings"][0], out["embeddings"][1])


def test_a_cube_opened_from_zarr_in_a_fresh_process_embeds(cube, tmp_path):
    """Nothing but xarray and xterramind imported: xterramind must bring rioxarray's .rio itself."""
    import subprocess
    import sys

    cube.to_dataset().to_zarr(tmp_path / "cube.zarr", zarr_format=2, consolidated=False)
    code = (
        "import xarray as xr, xterramind\n"
        f"cube = xr.open_zarr({str(tmp_path / 'cube.zarr')!r}, decode_coords='all', consolidated=False)['reflectance']\n"
        "model = xterramind.load_model('terramind_micro', weights='random', device='cpu')\n"
        "print(cube.terramind.embed(model).rio.crs.to_epsg())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "32618"


# -- dtype: how the vectors are stored ------------------------------------------------------------------------------

STATED = {"float16": (2.0**-11, 0.999999), "int8": (0.008, 0.9995)}  # per component / vector length; cosine


def _errors(values: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token: the largest component error relative to the float32 vector's length, and the cosine similarity."""
    rows = [np.moveaxis(a, 0, -1).reshape(-1, a.shape[0]).astype(np.float64) for a in (values, reference)]
    length = np.linalg.norm(rows[1], axis=1)
    return np.abs(rows[0] - rows[1]).max(axis=1) / length, (rows[0] * rows[1]).sum(1) / np.linalg.norm(rows[0], axis=1) / length


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("name", ["micro", "tiny"])
def test_each_dtype_is_within_its_stated_error_of_the_float32_vectors(cube, micro, tiny, name, dtype):
    model = {"micro": micro, "tiny": tiny}[name]
    reference = cube.terramind.embed(model).values
    result = cube.terramind.embed(model, dtype=dtype).compute()
    assert (result["embeddings"] if dtype == "int8" else result).dtype == dtype and result.attrs["model"] == model.name
    vectors = xterramind.dequantize(result)
    assert vectors.dtype == np.float32 and vectors.dims == ("embedding", "y", "x") and vectors.name == "embeddings"
    assert vectors.rio.crs == cube.rio.crs and vectors.rio.transform() == cube.terramind.embed(model).rio.transform()
    error, cosine = _errors(vectors.values, reference)
    bound, similarity = STATED[dtype]
    assert 0 < error.max() <= bound and cosine.min() >= similarity, (error.max(), cosine.min())


def test_int8_is_the_alphaearth_encoding_of_unit_vectors_with_their_lengths_beside(cube, micro):
    prepared = embed.prepare(cube, micro, dtype="int8", chunks=7)
    assert prepared.outputs == {"embeddings": (np.int8, (64,)), "embeddings_scale": (np.float32, ())}
    result = prepared.lazy()
    assert isinstance(result, xr.Dataset) and result.rio.crs == cube.rio.crs
    assert result.embeddings.dims == ("embedding", "y", "x") and result.embeddings_scale.dims == ("y", "x")
    assert result.embeddings.attrs["nodata"] == -128 and result.embeddings.attrs["model"] == "terramind_micro"
    computed = result.compute()
    reference = cube.terramind.embed(micro).values.astype(np.float64)
    length = np.linalg.norm(reference, axis=0)
    np.testing.assert_allclose(computed.embeddings_scale.values, length, rtol=1e-5)
    unit = reference / length
    expected = np.round(np.sign(unit) * np.sqrt(np.abs(unit)) * 127)
    codes = computed.embeddings.values.astype(int)
    assert np.abs(codes - expected).max() <= 1 and (codes == expected).mean() > 0.999  # ties of rounding aside
    assert codes.min() >= -127 and codes.max() <= 127


def test_the_kernel_converts_on_the_device_side_of_the_batch(cube, micro):
    prepared = embed.prepare(cube, micro, dtype="float16")
    pixels = torch.from_numpy(cube.values[:, :224, :224].astype(np.float32))[None]
    out = embed.kernel(prepared.job, micro, {"S2L1C": micro.normalize("S2L1C", pixels)}, [None])
    assert set(out) == {"embeddings"} and out["embeddings"].dtype == torch.float16
    vectors = torch.tensor([3.0, -4.0, 0.0]).reshape(1, 3, 1, 1)
    packed = embed.stored(vectors, "int8")
    assert packed["embeddings"].flatten().tolist() == [round(0.6**0.5 * 127), -round(0.8**0.5 * 127), 0]
    assert packed["embeddings_scale"].shape == (1, 1, 1) and packed["embeddings_scale"].item() == 5.0
    assert embed.stored(torch.zeros(1, 3, 1, 1), "int8")["embeddings"].abs().sum() == 0  # a zero vector stays finite


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_each_dtype_is_the_same_for_any_chunking(cube, micro, dtype):
    reference = cube.terramind.embed(micro, dtype=dtype).compute()
    for input_chunks, output_chunks in (({"y": 100, "x": 77}, 7), ({"y": 480, "x": 480}, 30)):
        other = cube.chunk(input_chunks).terramind.embed(micro, dtype=dtype, chunks=output_chunks).compute()
        if dtype == "int8":  # at most one step apart, where float32 rounding might tip a code
            assert np.abs(other.embeddings.values.astype(int) - reference.embeddings.values).max() <= 1
            np.testing.assert_allclose(other.embeddings_scale.values, reference.embeddings_scale.values, rtol=1e-6)
        else:
            np.testing.assert_array_max_ulp(other.values, reference.values, maxulp=1 if dtype == "float16" else 64)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_nodata_tokens_are_nan_or_minus_128_in_memory_and_in_the_store(cube, micro, dtype, zarr_format, tmp_path):
    values = cube.values.copy()
    values[:, :256, :] = 0  # the top 16 token rows: nodata; the first row of 6-token regions reads no valid pixel
    holed = cube.copy(data=values).rio.write_nodata(0).chunk({"y": 240, "x": 240})
    empty = np.isnan(holed.terramind.embed(micro, chunks=6).values).all(axis=0)
    assert empty[:16].all() and not empty[16:].any()
    result = holed.terramind.embed(micro, chunks=6, dtype=dtype)
    report = result.terramind.to_zarr(tmp_path / "e.zarr", zarr_format=zarr_format)
    assert report.empty > 0  # regions marked without running the model: their nodata comes from the store
    opened = xterramind.open(tmp_path / "e.zarr")
    for computed in (result.compute(), opened.compute()):
        if dtype == "int8":
            codes = computed.embeddings.values
            assert (codes[:, empty] == -128).all() and (codes[:, ~empty] > -128).all()
            assert np.isnan(computed.embeddings_scale.values[empty]).all()
            assert np.isfinite(computed.embeddings_scale.values[~empty]).all()
        else:
            assert computed.dtype == np.float16
            assert np.isnan(computed.values[:, empty]).all() and np.isfinite(computed.values[:, ~empty]).all()
        vectors = xterramind.dequantize(computed).values
        assert np.isnan(vectors[:, empty]).all() and np.isfinite(vectors[:, ~empty]).all()


def test_embeddings_with_time_keep_it_in_each_dtype(cube, micro):
    stack = xr.concat([cube, cube.astype("float32") * 1.1], dim="time")
    codes = stack.assign_coords(time=np.array(["2024-06-01", "2024-07-01"], dtype="datetime64[ns]")).terramind.embed(
        micro, dtype="int8")
    assert codes.embeddings.dims == ("time", "embedding", "y", "x") and codes.embeddings_scale.dims == ("time", "y", "x")
    vectors = xterramind.dequantize(codes)
    assert vectors.dims == ("time", "embedding", "y", "x") and vectors.sizes["time"] == 2
    error, _ = _errors(vectors.isel(time=0).values, cube.terramind.embed(micro).values)
    assert error.max() <= STATED["int8"][0]


@pytest.mark.parametrize("dtype", ["int4", "float64", np.float64, "f2", None, True, 8, ["int8"]])
def test_a_dtype_that_is_not_offered_is_an_option_error_naming_those_that_are(cube, micro, dtype):
    with pytest.raises(OptionError, match=r"dtype must be 'float32', 'float16' or 'int8', got "):
        cube.terramind.embed(micro, dtype=dtype)


def test_a_dtype_may_be_given_as_numpy_spells_it(cube, micro):
    assert cube.terramind.embed(micro, dtype=np.float16).dtype == np.float16
    assert embed.prepare(cube, micro, dtype=np.dtype("int8")).job.dtype == "int8"


def test_dequantize_gives_float32_and_refuses_int8_codes_without_their_lengths(cube, micro):
    plain = cube.terramind.embed(micro)
    assert xterramind.dequantize(plain) is plain
    half = xterramind.dequantize(cube.terramind.embed(micro, dtype="float16"))
    assert half.dtype == np.float32 and half.attrs["product"] == "embeddings"
    codes = cube.terramind.embed(micro, dtype="int8")
    with pytest.raises(InputError, match="int8 embeddings need their embeddings_scale: pass the Dataset"):
        xterramind.dequantize(codes["embeddings"])
    attrs = xterramind.dequantize(codes).attrs
    assert attrs["product"] == "embeddings" and attrs["model"] == "terramind_micro" and "nodata" not in attrs


def test_an_area_run_takes_the_dtype_and_sizes_its_store_by_it(micro):
    from xterramind import runner
    from xterramind.planner import plan_area
    from xterramind.sources import SyntheticSource

    plan, source = plan_area((9.0, 45.0, 9.12, 45.08), region=24), SyntheticSource()
    sizes = {dtype: runner.forecast(plan, source, "embed", micro, tiles_per_second=100, dtype=dtype).rows[0][-1]
             for dtype in ("float32", "float16", "int8")}
    assert sizes["float16"] == sizes["float32"] // 2 and sizes["int8"] == pytest.approx(sizes["float32"] * 68 / 256, 1e-3)
    with pytest.raises(OptionError, match="dtype must be 'float32', 'float16' or 'int8', got 'int4'"):
        runner.forecast(plan, source, "embed", micro, tiles_per_second=100, dtype="int4")
