"""The ``predict`` verb with fine-tuned models as TerraTorch leaves them (configs and Lightning checkpoints made here,
seeded weights): one tile equals the model, blended classes are the argmax of the blended probabilities, chunk
invariance, TiM determinism, stores read back, bad inputs refused before any compute (parity: test_task_parity.py)."""

import os
import pickle

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import torch
import xarray as xr

import xterramind
from tests.tasks import save_checkpoint, seeded_model, task_config, write_task
from xterramind import runtime
from xterramind.errors import CheckpointError, ConfigError, InputError, MissingBandsError, OptionError, XterramindError
from xterramind.models.task_config import read_config
from xterramind.predict import PREDICT

FCN = {"decoder": "FCNDecoder", "decoder_args": {"channels": 16, "num_convs": 4},
       "necks": [{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}]}


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    config, checkpoint = write_task(tmp_path_factory.mktemp("seg"), task_config(classes=4, **FCN))
    return xterramind.load_task(config, checkpoint, device="cpu")


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    config, checkpoint = write_task(tmp_path_factory.mktemp("reg"), task_config(
        kind="regression", decoder="UperNetDecoder", decoder_args={"channels": 16},
        necks=[{"name": "SelectIndices", "indices": [0, 1, 1, 1]}, {"name": "ReshapeTokensToImage"}],
        head_args={"channel_list": [8]}))
    return xterramind.load_task(config, checkpoint, device="cpu")


def _direct(task, tile: xr.DataArray) -> torch.Tensor:
    """The model called on one tile of raw units, as TerraTorch's data module would feed it."""
    x = task.normalize("S2L1C", torch.from_numpy(tile.values.astype(np.float32))[None])
    return task.predict({"S2L1C": x})[0]


def test_a_scene_of_one_tile_equals_the_model_called_on_it(cube, segmentation):
    tile = cube.isel(y=slice(0, 224), x=slice(0, 224))
    out = tile.terramind.predict(segmentation, probabilities="float32").compute()
    probabilities = torch.softmax(_direct(segmentation, tile), dim=0)
    np.testing.assert_allclose(out.class_probability.values, probabilities.numpy(), atol=1e-6)
    np.testing.assert_array_equal(out.classes.values, probabilities.argmax(0).numpy())


def test_the_classes_are_the_argmax_of_the_blended_probabilities(cube, segmentation):
    out = cube.terramind.predict(segmentation, probabilities="float32").compute()
    assert out.classes.dtype == np.uint8 and out.classes.shape == (480, 480)
    np.testing.assert_array_equal(out.classes.values, out.class_probability.values.argmax(0))
    np.testing.assert_allclose(out.class_probability.sum("class").values, 1, atol=1e-5)
    assert len(np.unique(out.classes.values)) > 1  # a map, not one class
    assert out.rio.crs == cube.rio.crs and out.rio.transform() == cube.rio.transform()


def test_predictions_do_not_depend_on_chunks_or_batches(cube, segmentation, regression):
    for task in (segmentation, regression):
        a = cube.terramind.predict(task, chunks=12, batch_size=3).compute()
        b = cube.terramind.predict(task, chunks=24, batch_size=8).compute()
        for name in a.data_vars:  # oneDNN picks other convolution kernels for other batch sizes: float32 rounding
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-5)
        again = cube.terramind.predict(task, chunks=12, batch_size=3).compute()
        for name in a.data_vars:  # the same batches: the same bits
            np.testing.assert_array_equal(a[name].values, again[name].values)


def test_regression_gives_blended_values_nan_where_there_is_no_input(cube, regression):
    values = cube.values.copy()
    values[:, :100, :100] = 0  # S2's nodata
    holed = cube.copy(data=values).rio.write_nodata(0).chunk({"y": 240, "x": 240})
    out = holed.terramind.predict(regression).compute()
    assert list(out.data_vars) == ["prediction"] and out.prediction.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out.prediction.values), (values == 0).any(0))  # NaN just where nodata
    tile = cube.isel(y=slice(0, 224), x=slice(0, 224))
    one = tile.terramind.predict(regression).compute()
    np.testing.assert_allclose(one.prediction.values, _direct(regression, tile)[0].numpy(), atol=1e-5)


def test_predictions_write_resumably_and_read_back_in_xarray_and_gdal(cube, segmentation, tmp_path):
    out = cube.terramind.predict(segmentation, chunks=12, probabilities="uint8")
    report = out.terramind.to_zarr(tmp_path / "p.zarr")
    assert report.written == 9
    assert out.terramind.to_zarr(tmp_path / "p.zarr").skipped == 9  # a rerun redoes nothing
    stored = xterramind.open(tmp_path / "p.zarr")
    np.testing.assert_array_equal(stored.classes.values, out.classes.values)
    with rasterio.open(f'ZARR:"{tmp_path / "p.zarr"}":/classes') as dataset:
        assert dataset.crs == cube.rio.crs and dataset.transform == cube.rio.transform()
        np.testing.assert_array_equal(dataset.read(1), out.classes.values)


def test_a_tim_model_is_deterministic_and_chunk_invariant(cube, tmp_path):
    config = task_config(backbone="terramind_micro_tim", extra_args={"backbone_tim_modalities": ["LULC"]}, **FCN)
    task = xterramind.load_task(*write_task(tmp_path, config), device="cpu")
    first = cube.terramind.predict(task, seed=5, chunks=12, probabilities="float32").compute()
    again = cube.terramind.predict(task, seed=5, chunks=24, probabilities="float32").compute()
    other = cube.terramind.predict(task, seed=6, chunks=12, probabilities="float32").compute()
    # the documented tolerance across chunkings: a tile run in a batch of one rounds differently (by up to 5e-6 here)
    np.testing.assert_allclose(first.class_probability.values, again.class_probability.values, atol=1e-5)
    assert not np.allclose(first.class_probability.values, other.class_probability.values)
    assert first.attrs["seed"] == 5


def test_band_subsets_and_the_configs_statistics_are_the_models(cube, tmp_path):
    config = task_config(**FCN, extra_args={"backbone_bands": {"S2L1C": ["BLUE", "GREEN", "RED", "NIR_NARROW"]}})
    config["data"]["init_args"] |= {"means": [1001, 1102, 1203, 2004], "stds": [510, 520, 630, 940]}
    task = xterramind.load_task(*write_task(tmp_path, config), device="cpu")
    (spec,) = task.inputs
    assert spec.bands == ("B02", "B03", "B04", "B8A") and spec.mean == (1001, 1102, 1203, 2004)
    four = cube.sel(band=["B02", "B03", "B04", "B8A"])  # a cube of just those bands is enough
    out = four.terramind.predict(task).compute()
    np.testing.assert_array_equal(out.classes.values, cube.terramind.predict(task).classes.values)


def test_units_are_checked_against_the_statistics_the_model_was_fine_tuned_with(cube, tmp_path):
    """A model fine-tuned on reflectance 0-1 (its config's means ~0.1) takes a cube in 0-1 and refuses one in
    reflectance x 10000 with the factor; a model fine-tuned in TerraMind's units keeps the physical checks."""
    zero_one = task_config(**FCN)
    zero_one["data"]["init_args"] |= {"means": [m / 10000 for m in zero_one["data"]["init_args"]["means"]],
                                      "stds": [s / 10000 for s in zero_one["data"]["init_args"]["stds"]]}
    task = xterramind.load_task(*write_task(tmp_path / "zero_one", zero_one), device="cpu")
    scaled = (cube.astype("float32") / 10000).assign_attrs(cube.attrs)
    same = scaled.terramind.predict(task).compute()
    np.testing.assert_array_equal(same.classes.values, scaled.chunk({"x": 160}).terramind.predict(task).classes.values)
    for raw in (cube, cube.chunk({"x": 160})):  # checked in the region task's window, before the model
        with pytest.raises(InputError, match=r"far from the data this model was fine-tuned on.*typically [0-9,.]+x its means.*"
                                              r"cube / 10000"):
            raw.terramind.predict(task).compute()
    usual = xterramind.load_task(*write_task(tmp_path / "usual", task_config(**FCN)), device="cpu")
    with pytest.raises(InputError, match="far too small for reflectance x 10000"):
        scaled.terramind.predict(usual).compute()


def test_the_handle_pickles_as_its_recipe_and_loads_once_per_process(segmentation):
    data = pickle.dumps(segmentation)
    assert len(data) < 20_000  # the config's text and paths, no tensors
    before = runtime.loads[segmentation.name]
    assert pickle.loads(data) is segmentation and runtime.loads[segmentation.name] == before


def test_a_module_of_your_own_is_rebuilt_from_its_recipe(cube, tmp_path):
    config = task_config(classes=2, **FCN)
    state = seeded_model(config).state_dict() | {"aux_heads.depth.weight": torch.ones(2)}  # training-only: ignored
    save_checkpoint(tmp_path / "own.ckpt", state, config)
    task = xterramind.load_task(config, tmp_path / "own.ckpt", device="cpu", module=(own_model, {"config": config}))
    reference = xterramind.load_task(*write_task(tmp_path, config), device="cpu")
    a, b = (cube.terramind.predict(t, probabilities="float32").compute() for t in (task, reference))
    np.testing.assert_allclose(a.class_probability.values, b.class_probability.values, atol=1e-6)
    assert pickle.loads(pickle.dumps(task)) is task


def own_model(config):
    """A module of one's own (here the native one, built outside xterramind's config reading)."""
    return seeded_model(config)


def test_the_verb_is_declared_on_the_one_pipeline(cube, segmentation):
    from xterramind import pipeline, runner

    assert pipeline.VERBS["predict"] is PREDICT and "predict" in runner.VERBS
    required, taken = runner.verb_options("predict")
    assert required == [] and {"seed", "probabilities", "blend", "modalities"} <= set(taken)


# -- bad input: a clear xterramind error, before anything is computed -------------------------------------------


@pytest.mark.parametrize("change, error, says", [
    (lambda c: c["model"]["init_args"]["model_args"].update(backbone="prithvi_eo_v2_300"), ConfigError, "not TerraMind"),
    (lambda c: c["model"]["init_args"]["model_args"].update(decoder="SegFormerDecoder"), ConfigError,
     "supported decoders: .*UNetDecoder"),
    (lambda c: c["model"]["init_args"]["model_args"]["necks"].append({"name": "FeaturePyramidNetworkNeck"}),
     ConfigError, "supported necks"),
    (lambda c: c["model"]["init_args"]["model_args"].update(decoder_depth=3), ConfigError,
     r"does not take \['decoder_depth'\]; it takes \['decoder_channels'"),
    (lambda c: c["model"].update(class_path="terratorch.tasks.ClassificationTask"), ConfigError, "supported"),
    (lambda c: c["model"]["init_args"].update(model_factory="SMPModelFactory"), ConfigError, "EncoderDecoderFactory"),
    (lambda c: c["data"]["init_args"].pop("means"), ConfigError, "no means for S2L1C"),
    (lambda c: c["data"]["init_args"].update(stds=[1.0] * 3), ConfigError, "hold 3 values"),
    (lambda c: c["model"]["init_args"]["model_args"].update(backbone_modalities=["LULC"]), ConfigError,
     "not supported"),
    (lambda c: c["model"]["init_args"]["model_args"].update(head_final_act="Sigmoid"), ConfigError,
     r"segmentation head does not take \['head_final_act'\]"),
])
def test_a_config_xterramind_cannot_run_is_refused_naming_what_it_can(tmp_path, change, error, says):
    config = task_config(**FCN)
    _, checkpoint = write_task(tmp_path, config)
    change(config)
    with pytest.raises(error, match=says):
        xterramind.load_task(config, checkpoint, device="cpu")


@pytest.mark.parametrize("act", ["os.system", "builtins.eval", "torch.nn.ReLU6", "subprocess.ReLU"])
def test_a_regression_head_takes_only_torch_activations_by_name(tmp_path, act):
    config = task_config(kind="regression", head_args={"final_act": act}, **FCN)
    with pytest.raises(ConfigError, match=r"head_final_act .* is not supported; supported: \[.*'Sigmoid'"):
        xterramind.load_task(config, write_task(tmp_path, task_config(kind="regression", **FCN))[1], device="cpu")


def test_the_data_module_s_constant_scale_is_part_of_the_standardization():
    """TerraTorch's data modules feed ``(x * constant_scale - mean) / std``: statistics of scaled data."""
    plain = task_config(**FCN)
    scaled = task_config(**FCN)
    data = scaled["data"]["init_args"]
    data |= {"constant_scale": 1e-4, "means": [m * 1e-4 for m in data["means"]], "stds": [s * 1e-4 for s in data["stds"]]}
    (a,), (b,) = read_config(plain).inputs, read_config(scaled).inputs
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-9)
    np.testing.assert_allclose(b.std, a.std, rtol=1e-9)
    data["constant_scale"] = 0
    with pytest.raises(ConfigError, match="constant_scale for S2L1C must be a positive number"):
        read_config(scaled)


def test_a_checkpoint_of_another_configuration_is_reported_key_by_key(tmp_path):
    _, checkpoint = write_task(tmp_path, task_config(classes=4, **FCN))
    other = task_config(classes=5, **FCN)
    with pytest.raises(CheckpointError, match=r"(?s)wrong shape.*head\.head\.2\.weight: file \[4, 16, 1, 1\], model \[5"):
        xterramind.load_task(other, checkpoint, device="cpu")
    unet = task_config(classes=4)
    with pytest.raises(CheckpointError, match=r"(?s)looks like a fine-tuned model: .*decoder FCNDecoder, 4 outputs"
                       r".*missing.*decoder\.decoder\.blocks.*unexpected.*decoder\.convs"):
        xterramind.load_task(unet, checkpoint, device="cpu")


def test_a_checkpoint_that_carries_code_is_refused_and_nothing_runs(tmp_path):
    config = task_config(**FCN)
    marker = tmp_path / "ran"
    state = seeded_model(config).state_dict()
    save_checkpoint(tmp_path / "evil.ckpt", state, config, callbacks=Payload(str(marker)))
    with pytest.raises(CheckpointError, match=r"posix\.system|asks to run code"):
        xterramind.load_task(config, tmp_path / "evil.ckpt", device="cpu")
    assert not marker.exists()


class Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def test_a_cube_without_the_models_inputs_fails_before_any_compute(cube, segmentation, monkeypatch):
    calls = []
    monkeypatch.setattr(type(segmentation), "predict", lambda self, *a, **k: calls.append(1))
    s1 = xr.DataArray(np.zeros((2, 64, 64), np.float32), dims=("band", "y", "x"),
                      coords={"band": ["vv", "vh"], "y": cube.y[:64], "x": cube.x[:64]}).rio.write_crs(cube.rio.crs)
    with pytest.raises(MissingBandsError, match="S2L1C"):
        s1.terramind.predict(segmentation)
    with pytest.raises(MissingBandsError, match="B12"):
        cube.sel(band=cube.band[:-1]).terramind.predict(segmentation)
    with pytest.raises(MissingBandsError, match=r"fine-tuned on \['S2L1C'\]"):
        cube.terramind.predict(segmentation, modalities={"S2L2A": list(cube.band.values[:12])})
    assert calls == []


def test_verbs_take_their_own_kind_of_model(cube, segmentation, micro):
    with pytest.raises(OptionError, match="load_task"):
        cube.terramind.predict(micro)
    with pytest.raises(OptionError, match="runs with predict"):
        cube.terramind.embed(segmentation)
    with pytest.raises(XterramindError, match=r"unknown option .targets."):
        cube.terramind.predict(segmentation, targets="LULC")
