"""One call for the right picture: ``obj.terramind.plot()`` on a cube, embeddings, a land-cover map or any
single band, as a matplotlib Figure in the data's own coordinates.

Plots read a strided view of at most ``max_size`` pixels a side, so plotting a continent-sized store costs
a few megabytes, never the scene.
"""

from __future__ import annotations

import keyword
import math
import textwrap

import numpy as np
import xarray as xr

from .errors import InputError, MissingBandsError, MissingDependencyError, OptionError
from .facts import LULC_CLASSES, LULC_COLOURS
from .modalities import canonical_bands
from .quicklook import lulc_rgb, principal_rgb, random_weights_note, true_colour

__all__ = ["COMPOSITES", "plot"]

COMPOSITES = {
    "false colour (NIR, red, green)": ("B08", "B04", "B03"),
    "false colour (NIR narrow, red, green)": ("B8A", "B04", "B03"),
    "true colour": ("RED", "GREEN", "BLUE"),
}
"""The composites tried in order when no ``bands=`` are given, by title: their (red, green, blue) bands. The
first one the data has wins."""


def plot(obj: xr.Dataset | xr.DataArray, *, bands=None, ax=None, max_size: int = 1024, title: str | None = None):
    """Draw ``obj`` the way its kind is best seen, and return the matplotlib Figure.

    - land cover (a ``generate("LULC")`` result or its ``LULC`` variable): the usual class colours and a
      legend of the nine classes;
    - classes of a fine-tuned model (a ``predict`` result or its ``classes``: any variable with CF
      ``flag_values`` and ``flag_meanings``): one colour per class and a legend of the class names;
    - embeddings (a ``embedding`` dimension): their first three principal components as RGB;
    - a cube of bands (or a generated image): a composite, by default false colour (NIR, red, green) for
      Sentinel-2 and (VV, VH, VV/VH) for Sentinel-1, each band stretched between its 2nd and 98th
      percentile;
    - anything else on ``(y, x)`` (DEM, NDVI, tokens, one band): a colour scale with a colour bar.

    A result made with random weights says so in a note on the picture, whatever the title.

    Args:
        obj: a cube or a result, with dims ``y`` and ``x`` (and at most one date).
        bands: three band names for a composite, e.g. ``("B04", "B03", "B02")`` for true colour, or one.
        ax: a matplotlib Axes to draw into; a new figure otherwise.
        max_size: at most this many pixels a side are read (every n-th pixel) — a quicklook, not a resample.
        title: the default names what is shown.

    Returns:
        The matplotlib Figure (save it with ``.savefig("map.png")``).

    Example:
        >>> lulc = cube.terramind.generate("LULC", model, seed=42)
        >>> lulc.terramind.plot().savefig("lulc.png")
        >>> cube.terramind.plot(bands=("B04", "B03", "B02"))    # true colour
    """
    data = _what_to_draw(obj)
    note = random_weights_note(obj.attrs) or random_weights_note(data.attrs)
    data = _strided(_single_date(data), max_size)
    figure, ax = _axes(ax)
    extent = _extent(data)
    if _is_land_cover(data):
        default = "land cover"
        _draw_land_cover(ax, data.values, extent)
    elif _is_categorical(data):
        default = "classes"
        _draw_classes(ax, data, extent)
    elif "embedding" in data.dims:
        default = "embeddings: first three principal components"
        ax.imshow(principal_rgb(data.transpose("embedding", "y", "x").values), extent=extent, interpolation="nearest")
    elif "band" in data.dims:
        default, data = _composite(data, bands)
        if "band" in data.dims:
            ax.imshow(true_colour(*data.values.astype(np.float64)), extent=extent, interpolation="nearest")
        else:
            _draw_scalar(figure, ax, data, extent)
    else:
        default = str(data.name or "") + _class_named(data)
        _draw_scalar(figure, ax, data, extent)
    crs = data.rio.crs
    unit = f" ({crs.to_string()})" if crs is not None else ""
    ax.ticklabel_format(style="plain", useOffset=False)  # metres as they are, not "1e6" offsets
    ax.set_xlabel(f"x{unit}")
    ax.set_ylabel(f"y{unit}")
    ax.set_title(title if title is not None else default)
    if note:  # on the picture itself, so that no crop or caption loses it
        ax.text(0.5, 0.98, textwrap.fill(note, 36), transform=ax.transAxes, ha="center", va="top", color="white",
                bbox={"facecolor": (0.6, 0, 0), "alpha": 0.85, "edgecolor": "none"})  # lines that fit small Axes
    return figure


def _what_to_draw(obj) -> xr.DataArray:
    """The one array a picture is made of: LULC from a generation result, a generated image with its band
    names on a ``band`` dimension, a cube of one variable per band stacked on ``band``."""
    if isinstance(obj, xr.DataArray):
        if not {"y", "x"} <= set(obj.dims):
            raise InputError(f"plot() needs dims 'y' and 'x'; this array has {tuple(obj.dims)}")
        return _with_band_names(obj)
    if not isinstance(obj, xr.Dataset):
        raise InputError(f"plot() needs an xarray Dataset or DataArray, got {type(obj).__name__}")
    spatial = [name for name, var in obj.data_vars.items() if {"y", "x"} <= set(var.dims)]
    if not spatial:
        raise InputError("nothing to plot: the Dataset has no variable with dims (y, x)")
    if "LULC" in spatial:
        return obj["LULC"]
    categorical = [name for name in spatial if _is_categorical(obj[name])]
    if len(categorical) == 1 and all("class" in obj[name].dims for name in spatial if name != categorical[0]):
        return obj[categorical[0]]  # a prediction's classes, beside their probabilities
    if len(spatial) == 1:
        return _with_band_names(obj[spatial[0]])
    if any(f"{name}_band" in obj[name].dims for name in spatial):
        raise InputError(f"this result holds {spatial}; plot one of them, e.g. result[{spatial[0]!r}].terramind.plot()")
    return obj[spatial].to_dataarray("band")


def _with_band_names(data: xr.DataArray) -> xr.DataArray:
    """A generated image's ``<modality>_band`` dimension as ``band``, labelled with its band names."""
    dim = next((dim for dim in data.dims if str(dim).endswith("_band")), None)
    if dim is None:
        return data
    names = data.attrs.get("band_names") or list(range(data.sizes[dim]))
    return data.rename({dim: "band"}).assign_coords(band=[str(name) for name in names])


def _single_date(data: xr.DataArray) -> xr.DataArray:
    if "time" not in data.dims:
        return data
    if data.sizes["time"] != 1:
        first = str(np.datetime_as_string(data["time"].values[0], unit="D")) if "time" in data.coords else "0"
        raise InputError(f"this array has {data.sizes['time']} dates; plot one: .isel(time=0).terramind.plot() "
                         f"or .sel(time='{first}').terramind.plot()")
    return data.isel(time=0)


def _strided(data: xr.DataArray, max_size: int) -> xr.DataArray:
    if not isinstance(max_size, int) or max_size < 16:
        raise OptionError(f"max_size must be a whole number of pixels of at least 16, got {max_size!r}")
    step = max(1, math.ceil(max(data.sizes["y"], data.sizes["x"]) / max_size))
    extra = [dim for dim in data.dims if dim not in ("y", "x", "band", "embedding")]
    if extra:
        dim = str(extra[0])  # class=0 is a syntax error: a keyword or an odd name goes in a dict
        chosen = f"{dim}=0" if dim.isidentifier() and not keyword.iskeyword(dim) else f"{{{dim!r}: 0}}"
        raise InputError(f"plot() draws (y, x) with at most bands or embeddings; select {extra} first, "
                         f"e.g. .isel({chosen})")
    return data.isel(y=slice(None, None, step), x=slice(None, None, step)).compute()


def _axes(ax):
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise MissingDependencyError("plot() needs matplotlib: pip install 'xterramind[plot]'") from error
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=(8, 6.5), layout="constrained")
    plt.close(figure)  # returned, not shown twice in notebooks; Jupyter displays the returned Figure
    return figure, ax


def _extent(data: xr.DataArray) -> tuple[float, float, float, float] | None:
    """Pixel-edge extent in the data's coordinates (None when there are no coordinates)."""
    if "x" not in data.coords or "y" not in data.coords or data.sizes["x"] < 2 or data.sizes["y"] < 2:
        return None
    x, y = data["x"].values.astype(np.float64), data["y"].values.astype(np.float64)
    dx, dy = (x[1] - x[0]) / 2, (y[1] - y[0]) / 2
    return x[0] - dx, x[-1] + dx, y[-1] + dy, y[0] - dy


def _is_land_cover(data: xr.DataArray) -> bool:
    return data.name == "LULC" or data.attrs.get("long_name") == "land use / land cover class"


def _draw_land_cover(ax, classes: np.ndarray, extent) -> None:
    from matplotlib.patches import Patch

    ax.imshow(lulc_rgb(classes), extent=extent, interpolation="nearest")
    present = set(np.unique(classes).tolist())
    shown = [c for c in range(len(LULC_CLASSES)) if c > 0 or c in present]  # "no data" only where it occurs
    handles = [Patch(facecolor=LULC_COLOURS[c] / 255, edgecolor="0.4", label=LULC_CLASSES[c]) for c in shown]
    ax.figure.legend(handles=handles, loc="outside right upper", frameon=False, title="class")


def _is_categorical(data: xr.DataArray) -> bool:
    return "flag_values" in data.attrs and "flag_meanings" in data.attrs


def _draw_classes(ax, data: xr.DataArray, extent) -> None:
    """One colour of matplotlib's qualitative maps per class, its ``nodata`` white; a legend of the classes (and
    of "no data" where it occurs)."""
    import matplotlib
    from matplotlib.patches import Patch

    values = [int(v) for v in np.atleast_1d(data.attrs["flag_values"])]
    names = [name.replace("_", " ") for name in str(data.attrs["flag_meanings"]).split()]
    palette = matplotlib.colormaps["tab10" if len(values) <= 10 else "tab20"]
    colours = {value: np.asarray(palette(i % palette.N)[:3]) for i, value in enumerate(values)}
    classes = data.values
    rgb = np.ones((*classes.shape, 3))  # white: nodata, or a value that is no class
    for value, colour in colours.items():
        rgb[classes == value] = colour
    ax.imshow(rgb, extent=extent, interpolation="nearest")
    handles = [Patch(facecolor=colours[v], edgecolor="0.4", label=name) for v, name in zip(values, names, strict=False)]
    if not np.isin(classes, values).all():
        handles.append(Patch(facecolor="white", edgecolor="0.4", label="no data"))
    ax.figure.legend(handles=handles, loc="outside right upper", frameon=False, title="class")


def _class_named(data: xr.DataArray) -> str:
    """": flood" for one class's probability (its ``class`` selected), else nothing."""
    names = data.attrs.get("class_names")
    if names is None or "class" not in data.coords or data["class"].ndim:
        return ""
    index = int(data["class"].values)
    return f": {names[index]}" if 0 <= index < len(names) else ""


def _composite(data: xr.DataArray, bands) -> tuple[str, xr.DataArray]:
    """The three bands of a composite (or one band), and its name."""
    names = [str(name) for name in data["band"].values] if "band" in data.coords else []
    known = canonical_bands(names)  # canonical name (B08, VV, RED...) -> the data's name
    if bands is not None:
        wanted = [bands] if isinstance(bands, str) else list(bands)
        if len(wanted) not in (1, 3):
            raise OptionError(f"bands= takes one band or three (red, green, blue channels), got {len(wanted)}")
        chosen = [name if name in names else known.get(str(name).upper()) for name in wanted]
        missing = [w for w, c in zip(wanted, chosen, strict=True) if c is None]
        if missing:
            raise MissingBandsError(f"no band {missing} here; the bands are {names}")
        picked = data.sel(band=chosen)
        return " / ".join(map(str, wanted)), picked.isel(band=0) if len(chosen) == 1 else picked
    for label, triple in COMPOSITES.items():
        if all(band in known for band in triple):
            return label, data.sel(band=[known[band] for band in triple])
    if "VV" in known and "VH" in known:
        vv, vh = data.sel(band=known["VV"]), data.sel(band=known["VH"])
        ratio = vv - vh if data.attrs.get("units") == "dB" else vv / vh.where(vh != 0)  # in dB a ratio is a difference
        ratio = ratio.assign_coords(band="VV/VH")
        return "Sentinel-1 (VV, VH, VV/VH)", xr.concat([vv, vh, ratio], dim="band", coords="minimal")
    if data.sizes["band"] >= 3:
        return "bands " + ", ".join(names[:3]), data.isel(band=slice(0, 3))
    return (names[0] if names else "band 0"), data.isel(band=0)


def _draw_scalar(figure, ax, data: xr.DataArray, extent) -> None:
    values = data.values.astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    image = ax.imshow(values, extent=extent, interpolation="nearest", cmap="viridis", vmin=low, vmax=high)
    units = data.attrs.get("units", "")
    figure.colorbar(image, ax=ax, shrink=0.8, label=f"{data.name or ''} {f'({units})' if units else ''}".strip())
