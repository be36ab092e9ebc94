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
