"""``.terramind.plot()`` picks the right picture for the bundled real scene and for results made from it,
reads a strided view, and says how to fix what it cannot draw."""

import subprocess
import sys
from pathlib import Path

import dask.array as da
import matplotlib
import numpy as np
import pytest
import xarray as xr

import xterramind
from xterramind.errors import InputError, MissingBandsError, OptionError
from xterramind.quicklook import lulc_rgb, principal_rgb, true_colour

matplotlib.use("Agg")


def _picture(figure) -> np.ndarray:
    return np.asarray(figure.axes[0].images[0].get_array())


def _notes(figure) -> list[str]:
    """The figure's texts that say "random weights" (the title, labels and legend are not texts of the figure)."""
    texts = [*figure.texts, *(text for ax in figure.axes for text in ax.texts)]
    return [" ".join(text.get_text().split()) for text in texts  # as one line, however it is wrapped
            if "random weights" in " ".join(text.get_text().split()) and text.get_visible()]


def test_land_cover_gets_its_colours_and_the_nine_class_legend(lulc):
    figure = lulc.terramind.plot()
    np.testing.assert_array_equal(_picture(figure), lulc_rgb(lulc.LULC.values))
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels[-9:] == list(xterramind.LULC_CLASSES[1:])
    assert figure.axes[0].get_title() == "land cover" and "EPSG:32618" in figure.axes[0].get_xlabel()
    np.testing.assert_array_equal(_picture(lulc.LULC.terramind.plot()), _picture(figure))  # the variable alone


def test_a_sentinel2_cube_is_false_colour_in_its_own_coordinates(cube):
    figure = cube.terramind.plot()
    bands = cube.sel(band=["B08", "B04", "B03"]).values.astype(np.float64)
    np.testing.assert_array_equal(_picture(figure), true_colour(*bands))
    assert figure.axes[0].get_title().startswith("false colour")
    left, right, bottom, top = figure.axes[0].images[0].get_extent()
    assert (left, bottom, right, top) == pytest.approx(cube.rio.bounds())
    true = cube.terramind.plot(bands=("red", "green", "blue"))  # any band names the alias tables know
    np.testing.assert_array_equal(_picture(true), true_colour(*cube.sel(band=["B04", "B03", "B02"]).values.astype(float)))


def test_embeddings_are_their_principal_components(cube, micro):
    embeddings = cube.terramind.embed(micro).compute()
    np.testing.assert_array_equal(_picture(embeddings.terramind.plot()), principal_rgb(embeddings.values))


def test_single_bands_get_a_colour_bar_and_sentinel1_its_ratio(cube):
    figure = cube.sel(band="B08").terramind.plot(title="NIR")
    assert figure.axes[0].get_title() == "NIR" and len(figure.axes) == 2  # the image and its colour bar
    sar = xr.DataArray(np.random.default_rng(0).gamma(2.0, 0.05, (2, 40, 40)).astype("float32"), dims=("S1GRD_band", "y", "x"),
                       coords={"y": np.arange(40.0, 0, -1), "x": np.arange(40.0)}, attrs={"band_names": ["VV", "VH"]})
    picture = sar.terramind.plot()
    assert picture.axes[0].get_title() == "Sentinel-1 (VV, VH, VV/VH)" and _picture(picture).shape == (40, 40, 3)


def test_a_fine_tuned_model_s_classes_get_a_colour_each_and_their_names(cube, tmp_path):
    """A ``predict`` result draws its classes (not a colour bar of ids): a qualitative colour per class, the
    config's class names in the legend, nodata white and "no data" in the legend only where it occurs; one
    class's probability is a colour bar titled with its name."""
    from tests.tasks import task_config, write_task

    config, checkpoint = write_task(tmp_path, task_config(
        classes=3, class_names=["water", "flooded land", "other"], decoder="FCNDecoder",
        decoder_args={"channels": 8, "num_convs": 1},
        necks=[{"name": "SelectIndices", "indices": [-1]}, {"name": "ReshapeTokensToImage"}]))
    task = xterramind.load_task(config, checkpoint, device="cpu")
    holed = cube.isel(y=slice(0, 224), x=slice(0, 224)).astype("float32")
    holed[:, :40, :40] = np.nan  # nodata in the input: the classes' nodata there
    result = holed.terramind.predict(task, probabilities="float32").compute()
    tab10 = matplotlib.colormaps["tab10"]
    for drawn in (result, result.classes):
        figure = drawn.terramind.plot()
        picture, classes = _picture(figure), result.classes.values
        for value in range(3):
            np.testing.assert_array_equal(picture[classes == value], np.broadcast_to(tab10(value)[:3], picture[classes == value].shape))
        np.testing.assert_array_equal(picture[:40, :40], np.ones((40, 40, 3)))
        labels = [text.get_text() for text in figure.legends[0].get_texts()]
        assert labels == ["water", "flooded land", "other", "no data"] and figure.axes[0].get_title() == "classes"
        assert not figure.axes[0].images[0].colorbar
    full = xterramind.plot.plot(result.classes.isel(y=slice(100, None), x=slice(100, None)))
    assert "no data" not in [text.get_text() for text in full.legends[0].get_texts()]  # none there
    with pytest.raises(InputError, match=r"isel\(\{'class': 0\}\)") as refused:  # class=0 would be a SyntaxError
        result.class_probability.terramind.plot()
    compile("result.class_probability" + str(refused.value).rsplit("e.g. ", 1)[1], "<fix>", "eval")  # the fix parses
    one = result.class_probability.isel({"class": 1}).terramind.plot()
    assert one.axes[0].get_title() == "class_probability: flooded land"


def test_big_arrays_are_read_strided():
    grid = xr.DataArray(da.random.random((6000, 5000), chunks=1000), dims=("y", "x"), name="dem",
                        coords={"y": np.arange(6000.0, 0, -1), "x": np.arange(5000.0)})
    figure = grid.terramind.plot(max_size=500)
    assert _picture(figure).shape == (500, 417)  # every 12th pixel


def test_what_cannot_be_drawn_says_how_to_fix_it(cube, lulc):
    with pytest.raises(InputError, match=r"isel\(time=0\)"):
        xr.concat([cube, cube], dim="time").terramind.plot()
    with pytest.raises(MissingBandsError, match=r"no band \['B99'\].*B01"):
        cube.terramind.plot(bands=("B99", "B04", "B03"))
    with pytest.raises(MissingBandsError, match=r"no band \['VV'\]"):
        cube.terramind.plot(bands="VV")
    for bands in (("B04", "B03"), ("B04", "B03", "B02", "B01")):
        with pytest.raises(OptionError, match="one band or three"):
            cube.terramind.plot(bands=bands)
    with pytest.raises(InputError, match=r"select \['class'\] first.*isel\(\{'class': 0\}\)"):
        lulc.LULC_probability.terramind.plot()
    with pytest.raises(InputError, match="plot one of them"):
        xr.Dataset({"S1GRD": lulc.LULC_probability.rename({"class": "S1GRD_band"}), "DEM": lulc.LULC}).terramind.plot()
    for max_size in (0, 15, 100.5, "1024"):
        with pytest.raises(OptionError, match="at least 16"):
            cube.terramind.plot(max_size=max_size)
    with pytest.raises(InputError, match="needs an xarray"):
        xterramind.plot.plot(np.zeros((4, 4)))


def _as_if_trained(result: xr.Dataset, **attrs) -> xr.Dataset:
    """``result`` with the attrs trained weights give it (checksums, no warning), on it and on each variable."""
    trained = result.copy(deep=True)
    for item in (trained, *trained.data_vars.values()):
        item.attrs.pop("warning")
        item.attrs |= {"weights": "0" * 64, "tokenizers": {"LULC": "1" * 64}} | attrs
    return trained


def test_pictures_made_with_random_weights_say_so_on_the_picture(cube, lulc, micro):
    import matplotlib.pyplot as plt

    warning = lulc.attrs["warning"]
    assert lulc.attrs["weights"] == "random" and "random weights" in warning
    for result in (lulc, lulc.LULC, lulc.LULC_probability.isel({"class": 1}), cube.terramind.embed(micro),
                   cube.terramind.tokenize("S2L2A", model=micro)):
        figure = result.terramind.plot(title="my map")  # whatever the title
        assert _notes(figure) == [warning], getattr(result, "name", "the Dataset")
    figure, axes = plt.subplots(1, 2)
    plt.close(figure)
    cube.terramind.plot(ax=axes[0])
    lulc.terramind.plot(ax=axes[1])  # into Axes of one's own: the note goes on the picture it belongs to
    assert [[" ".join(text.get_text().split()) for text in ax.texts] for ax in axes] == [[], [warning]]

    trained = _as_if_trained(lulc)
    for result in (cube, trained, trained.LULC, trained.LULC_probability.isel({"class": 1})):
        assert _notes(result.terramind.plot()) == []
    random_tokenizer = _as_if_trained(lulc, tokenizers={"LULC": "random"})  # a random tokenizer is enough
    assert len(_notes(random_tokenizer.LULC.terramind.plot())) == 1


# What importing plot runs, without the package's own __init__ files (xterramind/__init__.py and
# xterramind/models/__init__.py load the model): plot.py and every module it imports must not need torch.
WITHOUT_PACKAGE_INITS = """
import sys, types
from pathlib import Path
root = Path(sys.argv[1])
for name in ("xterramind", "xterramind.models"):
    package = types.ModuleType(name)
    package.__path__ = [str(root.joinpath(*name.split(".")))]
    sys.modules[name] = package
import xterramind.plot
loaded = sorted(name for name in sys.modules if name.startswith("xterramind."))
print("torch" in sys.modules, "xterramind.generate" in sys.modules, "xterramind.facts" in sys.modules, len(loaded))
"""


def test_plot_and_what_it_imports_need_no_torch():
    root = Path(xterramind.__file__).parents[1]
    done = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE_INITS, str(root)], capture_output=True, text=True,
                          timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    torch, generate, facts, modules = done.stdout.split()
    assert (torch, generate, facts) == ("False", "False", "True") and int(modules) >= 5
