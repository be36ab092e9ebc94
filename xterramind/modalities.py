"""From a cube to TerraMind's modalities: band names, band order, nodata, and one shared pixel grid.

Bands are found by name. The alias tables cover the usual conventions: Sentinel-2 ``B01``…``B12``
(also ``B1``, ``B02_10m`` SAFE-style), Earth Search (``coastal``, ``blue``, …, ``rededge1``, ``nir08``,
``swir16``, ``cirrus``), Planetary Computer (``B01``…), Sentinel-1 ``vv``/``vh``, and DEM
(``dem``, ``elevation``). Without an explicit ``modalities=`` the cube's bands decide: all 13
Sentinel-2 bands (B10, cirrus, exists only in L1C products) mean S2L1C, the 12 without B10 mean
S2L2A; VV and VH mean S1GRD; a DEM band means DEM. Other band sets (Landsat, PlanetScope, MODIS, a
red/green/blue image) are refused with what TerraMind takes; RGB is used when asked (``modalities=["RGB"]``).

Spatial dims are ``y`` and ``x``, or the ones declared with ``cube.rio.set_spatial_dims(...)``: those are
renamed to ``y``/``x``, so results come back on ``y``/``x``. ``check_units`` and ``check_grid`` catch the
mistakes the data and its grid show: wrong units or scale, a geographic CRS, pixels far from 10 m.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import xarray as xr
from pyproj import CRS, Proj
from pyproj.exceptions import ProjError
from rioxarray.exceptions import MissingSpatialDimensionError

from .errors import GridMismatchError, InputError, InputWarning, MissingBandsError, OptionError, UnknownModalityError
from .facts import RGB_ALIASES, S2_ALIASES, band_aliases, band_key
from .geo import grid_of, transformer
from .grid import PixelGrid, same_crs
from .models.registry import MODALITIES, ModalitySpec, resolve_modality

__all__ = ["ModalityInput", "canonical_bands", "check_grid", "check_units", "grid_of", "resolve"]

# Modalities found automatically, in the order they are looked for; RGB and S1RTC only on request.
AUTO = ("S2L1C", "S2L2A", "S1GRD", "DEM")


def canonical_bands(names: Sequence) -> dict[str, object]:
    """The given band names keyed by the canonical names they stand for (``B04``, ``VV``, ``DEM``, and ``RED``,
    ``GREEN``, ``BLUE`` for any red, green and blue band), for the names the alias tables know.

    Example:
        >>> canonical_bands(["red", "green", "blue", "nir"])["B08"]
        'nir'
    """
    tables = [band_aliases(resolve_modality(modality)) for modality in ("S2L1C", "S1GRD", "DEM", "RGB")]
    found = {}
    for name in names:
        for table in tables:
            band = table.get(band_key(name))
            if band is not None:
                found.setdefault(band, name)
    return found


@dataclass
class ModalityInput:
    """One modality cut from the cube: ``(band, y, x)`` or ``(time, band, y, x)`` in model band order."""

    spec: ModalitySpec
    data: xr.DataArray
    nodata: tuple[float | None, ...]  # per band; None when the band declares none


def _band_names(cube: xr.Dataset | xr.DataArray) -> list:
    if isinstance(cube, xr.Dataset):
        return _plain([name for name, var in cube.data_vars.items() if {"y", "x"} <= set(var.dims)])
    if "band" not in cube.dims:
        return [cube.name] if cube.name is not None else []
    labels = _plain(cube["band"].values) if "band" in cube.coords else []
    descriptions = cube.attrs.get("long_name")
    unnamed = not labels or not isinstance(labels[0], str)
    if unnamed and isinstance(descriptions, (tuple, list)) and len(descriptions) == cube.sizes["band"]:
        return _plain(descriptions)  # rioxarray keeps GeoTIFF band descriptions here
    return labels


def _plain(names) -> list:
    """Names as plain Python values: numpy 2 prints its scalars as ``np.str_('B01')`` in messages."""
    return [name.item() if isinstance(name, np.generic) else name for name in names]


def _select(cube, names: list, wanted: Sequence) -> xr.DataArray:
    """The bands ``wanted`` (names as they appear in the cube) stacked along ``band``."""
    if isinstance(cube, xr.Dataset):
        parts = [cube[name] for name in wanted]
        data = xr.concat(parts, dim="band", coords="minimal", compat="override", join="override")
    elif "band" in cube.dims:
        data = cube.isel(band=[names.index(name) for name in wanted])
    else:
        data = cube.expand_dims("band")
    return data.assign_coords(band=[str(name) for name in wanted])


def _nodata(cube, names: list, wanted: Sequence) -> tuple[float | None, ...]:
    def declared(var):
        for source in (var.attrs, var.encoding):
            for key in ("_FillValue", "nodata"):
                value = source.get(key)
                if value is not None and np.ndim(value) == 0:
                    return float(value)
        return var.rio.nodata if var.rio.nodata is not None else None

    if isinstance(cube, xr.Dataset):
        return tuple(declared(cube[name]) for name in wanted)
    return (declared(cube),) * len(wanted)


def _on_yx(cube):
    """The cube with the spatial dims declared to rioxarray (``cube.rio.set_spatial_dims``) renamed ``y``/``x``."""
    if not isinstance(cube, (xr.Dataset, xr.DataArray)) or {"y", "x"} <= set(cube.dims):
        return cube
    try:
        x, y = cube.rio.x_dim, cube.rio.y_dim
    except MissingSpatialDimensionError:
        return cube  # nothing declared: _check_cube says how to rename
    return cube.rename({y: "y", x: "x"})


def _check_cube(cube, what: str) -> None:
    if not isinstance(cube, (xr.Dataset, xr.DataArray)):
        raise InputError(f"{what} must be an xarray Dataset or DataArray, got {type(cube).__name__}")
    missing = {"y", "x"} - set(cube.dims)
    if missing:
        renames = {"lat": "y", "latitude": "y", "lon": "x", "longitude": "x", "rows": "y", "cols": "x", "row": "y", "col": "x"}
        hint = {d: renames[d] for d in cube.dims if d in renames}
        fix = f"rename them, e.g. .rename({hint})" if hint else "rename the spatial dimensions to 'y' and 'x'"
        raise InputError(f"{what} has dimensions {tuple(cube.dims)}; xterramind needs spatial dimensions 'y' and 'x': {fix}")
    extra = set(cube.dims) - {"y", "x", "band", "time"}
    if extra:
        raise InputError(f"{what} has dimensions {sorted(extra)} besides (time, band, y, x); select or stack them first")


def _find(cube, spec: ModalitySpec) -> tuple[list, list[str]]:
    """The cube's names for ``spec``'s bands (in model order) and the bands it lacks."""
    names = _band_names(cube)
    table = band_aliases(spec)
    found = {}
    for name in names:
        band = table.get(band_key(name))
        if band is not None and band not in found:
            found[band] = name
    return [found[b] for b in spec.bands if b in found], [b for b in spec.bands if b not in found]


def resolve(
    cube: xr.Dataset | xr.DataArray, modalities: Sequence[str] | Mapping | None = None,
    specs: Mapping[str, ModalitySpec] | None = None,
) -> list[ModalityInput]:
    """The modalities to feed the model, each as a DataArray in model band order.

    ``modalities`` may be ``None`` (found from band names), a list of modality names, or a mapping
    from modality name to either a list of the cube's band names in the model's band order, or
    another cube holding that modality (it must be on the same pixel grid). ``specs`` replaces modalities' own specs
    by name (a fine-tuned model's: some of the bands, its training statistics). Spatial dims declared with
    ``cube.rio.set_spatial_dims(x_dim="lon", y_dim="lat")`` are read as ``x``/``y`` (and named so in the results).

    Example:
        >>> [item.spec.name for item in resolve(xterramind.open_sample())]
        ['S2L1C']
    """
    cube = _on_yx(cube)
    _check_cube(cube, "the cube")
    requests = [((specs or {}).get(spec.name, spec), source, bands) for spec, source, bands in _requests(cube, modalities)]
    inputs = []
    for spec, source, bands in requests:
        source = _on_yx(source)
        _check_cube(source, f"the {spec.name} cube")
        names = _band_names(source)
        if bands is None:
            bands, missing = _find(source, spec)
            if missing:
                sensor = _other_sensor(names)
                if sensor is not None:
                    raise MissingBandsError(_not_terramind([str(name) for name in names], sensor))
                raise MissingBandsError(
                    f"{spec.name} needs bands {list(spec.bands)}; missing {missing} (the cube has {names}). "
                    f"Add them, or name the cube's bands for {spec.name} explicitly: "
                    f"modalities={{'{spec.name}': [<{spec.channels} band names in this order>]}}"
                )
        else:
            unknown = [b for b in bands if b not in names]
            if unknown or len(bands) != spec.channels:
                raise MissingBandsError(
                    f"modalities['{spec.name}'] must list {spec.channels} of the cube's bands in the order "
                    f"{list(spec.bands)}; got {len(bands)}, unknown: {unknown}, the cube has {names}"
                )
        data = _select(source, names, bands)
        if not (np.issubdtype(data.dtype, np.number) and not np.issubdtype(data.dtype, np.complexfloating)):
            raise InputError(f"{spec.name} has dtype {data.dtype}; expected real numbers (ints or floats)")
        if spec.name in ("S2L1C", "S2L2A") and np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize < 2:
            raise InputError(
                f"{spec.name} has dtype {data.dtype}: 8-bit integers cannot hold Sentinel-2 reflectance x 10000 "
                "(values up to ~10000 wrap around or were quantised, as in a visual/TCI product). Give the reflectance "
                "bands as 16-bit integers or floats (uint16, int16, float32; xterramind.stac.load gives them so), "
                "without casting to 8 bits; a true-colour 8-bit image goes in as modalities=['RGB']"
            )
        order = [d for d in ("time", "band", "y", "x") if d in data.dims]
        inputs.append(ModalityInput(spec, data.transpose(*order), _nodata(source, names, bands)))
    _check_same_grid(inputs)
    return inputs


def _requests(cube, modalities):
    """(spec, source cube, explicit band names or None) for every modality to use."""
    if modalities is None:
        found = []
        for name in AUTO:
            spec = resolve_modality(name)
            if name == "S2L2A" and any(s.name == "S2L1C" for s, _, _ in found):
                continue
            bands, missing = _find(cube, spec)
            if not missing:
                if name == "S1GRD" and _marked(cube, bands, "S1RTC"):  # stac.load marks terrain-corrected data
                    spec = resolve_modality("S1RTC")
                found.append((spec, cube, None))
            elif bands and name in ("S2L2A", "S1GRD"):
                raise MissingBandsError(_partly(cube, name, bands, missing))
        if not found:
            names = [str(name) for name in _band_names(cube)]
            sensor = _other_sensor(names)
            if sensor is not None:
                raise MissingBandsError(_not_terramind(names, sensor))
            raise MissingBandsError(
                f"no TerraMind modality found in the cube's bands {names}: name them like Sentinel-2 (B01…B12, "
                "or blue, red, nir, swir16…), Sentinel-1 (vv, vh) or DEM, or map them with modalities={...}. "
                f"TerraMind takes {_takes()}"
            )
        return found
    if isinstance(modalities, str):
        modalities = [modalities]
    items = modalities.items() if isinstance(modalities, Mapping) else [(name, None) for name in modalities]
    requests = []
    for name, value in items:
        spec = _image_spec(name)
        if isinstance(value, (xr.Dataset, xr.DataArray)):
            requests.append((spec, value, None))
        elif value is None:
            requests.append((spec, cube, None))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            requests.append((spec, cube, _plain(value)))
        else:
            raise OptionError(f"modalities['{name}'] must be a list of band names or a cube, got {type(value).__name__}")
    if not requests:
        raise OptionError("modalities is empty; pass None to find them from band names")
    return requests


def _partly(cube, name: str, bands: list, missing: list[str]) -> str:
    """What to say about a cube holding some of ``name``'s bands: add the rest, unless it is another sensor."""
    names, bands = [str(band) for band in _band_names(cube)], [str(band) for band in bands]
    sensor = _other_sensor(names)
    if sensor is not None:
        return _not_terramind(names, sensor)
    message = (f"the cube has some {name} bands {bands} but lacks {missing}: if it is {_SENSORS[name]}, add the "
               f"missing bands (on the same 10 m grid, as xterramind.stac.load gives them), or pick bands explicitly "
               f"with modalities={{'{name}': [...]}}")
    rgb = _rgb_bands(names)
    if rgb and len(missing) > len(bands):  # mostly not there: maybe not Sentinel-2 at all
        message += f"; to use only its red, green and blue, pass modalities={{'RGB': {rgb}}} (8-bit values 0-255)"
    return message


_SENSORS = {"S2L2A": "Sentinel-2", "S1GRD": "Sentinel-1"}

# Band names that give away another sensor (matched on _key's reduced names), so that its bands are not
# invited into Sentinel-2's slots: other wavelengths, pixel sizes and scales than TerraMind learnt.
_OTHER_SENSORS = (
    ("Landsat", r"(sr|st)_b\d+|qa_pixel|qa_radsat|sr_qa_aerosol|lwir\d*|st_\w+"),
    ("MODIS", r"sur_refl\w*|nadir_reflectance\w*|\w*modis\w*"),
    ("PlanetScope", r"coastal_blue|green_i|yellow"),
    ("Sentinel-3 OLCI", r"oa\d\d\w*"),
)


def _other_sensor(names: Sequence) -> str | None:
    """The sensor other than TerraMind's that a band set comes from, where its names say so; else None."""
    keys = {band_key(name) for name in names}
    for sensor, pattern in _OTHER_SENSORS:
        if any(re.fullmatch(pattern, key) for key in keys):
            return sensor
    s2 = {band for band in canonical_bands(names) if band in S2_ALIASES}
    if keys & {"b10", "b11"} and not s2 & {"B8A", "B12"}:
        return "Landsat 8/9 or HLS L30"  # numbered B1…B11: bands 10 and 11 are thermal there, not Sentinel-2's
    if "B8A" in s2 and not s2 & {"B05", "B06", "B07", "B08"}:
        return "Landsat"  # nir08, swir16, swir22 without red edge or broad NIR: Landsat's names on Earth Search / PC
    rgb = _rgb_bands(names)
    if rgb and len(rgb) == len(keys):
        return "RGB"
    return None


def _rgb_bands(names: Sequence) -> list:
    """The cube's red, green and blue band names in that order ([] unless all three are there)."""
    found = {band: name for band, name in canonical_bands(names).items() if band in RGB_ALIASES}
    return [found[band] for band in RGB_ALIASES] if len(found) == len(RGB_ALIASES) else []


def _not_terramind(names: list, sensor: str) -> str:
    if sensor == "RGB":
        return (f"the cube's bands {names} are red, green and blue: TerraMind takes them as its RGB modality, used "
                "only when asked: pass modalities=['RGB'] (8-bit values 0-255, like a true-colour image)")
    message = (f"no TerraMind modality found in the cube's bands {names}: they look like {sensor} bands, which "
               f"TerraMind does not take (do not map them into Sentinel-2's slots: other wavelengths, pixel sizes "
               f"and scaling). TerraMind takes {_takes()}")
    rgb = _rgb_bands(names)
    if rgb:
        message += f". Its red, green and blue can go in as RGB: modalities={{'RGB': {rgb}}} (8-bit values 0-255)"
    return message


def _takes() -> str:
    """TerraMind's pixel modalities, their bands and units, for messages."""
    return "; ".join(f"{spec.name} ({', '.join(spec.bands)}; {spec.units})"
                     for spec in MODALITIES.values() if spec.kind == "image")


def _marked(cube, bands, modality: str) -> bool:
    """Whether the cube's variables for ``bands`` say they hold ``modality`` (``attrs["modality"]``)."""
    return isinstance(cube, xr.Dataset) and all(cube[b].attrs.get("modality") == modality for b in bands)


def _image_spec(name: str) -> ModalitySpec:
    spec = resolve_modality(name)
    if spec.kind != "image":
        raise UnknownModalityError(
            f"{spec.name} is not a pixel modality; cubes can provide "
            f"{[s.name for s in MODALITIES.values() if s.kind == 'image']}"
        )
    return spec


SAMPLE_SIDE = 128  # a window is checked on a strided sample of about 128 x 128 pixels: enough to see a unit mistake
CHECK_INPUT_OFF = "pass check_input=False (in a run config: options: {check_input: false})"


def check_units(name: str, values: np.ndarray, nodata: Sequence[float | None] = (),
                model_spec: ModalitySpec | None = None) -> None:
    """Catch the unit and scale mistakes that show in the data, with the fix; called on in-memory data at
    once and, for lazy data, inside each region task on the window it reads.

    The bounds come from what TerraMind was trained on (``ModalitySpec.mean``/``std``) and from physics:
    Sentinel-2 as reflectance x 10000 (not 0-1), Sentinel-1 in dB (not linear power), RGB as 8-bit values,
    a DEM in metres. Raises ``InputError`` (a DEM that may be in km only warns, ``InputWarning``). A model
    fine-tuned on data in other units (``model_spec``'s statistics far from the pre-training ones, e.g. reflectance
    0-1) is checked against its own statistics instead: each band's median within 10 of its standard deviations.

    Args:
        name: the modality, e.g. ``"S2L2A"``.
        values: ``(..., band, y, x)`` raw values in the modality's band order.
        nodata: each band's nodata value (or None); these and NaNs are left out.
        model_spec: the input as the model takes it (its bands, and the statistics it standardizes with), where
            not TerraMind's pre-training one.

    Example:
        >>> check_units("S2L2A", np.full((12, 64, 64), 0.12))
        Traceback (most recent call last):
        xterramind.errors.InputError: S2L2A values look far too small for reflectance x 10000: ...
    """
    rule = _UNIT_RULES.get(name)
    if rule is None:
        return
    pretraining = resolve_modality(name)
    spec = pretraining if model_spec is None else model_spec  # its bands are the window's
    if _other_units(pretraining, spec):
        rule = _fine_tuning_units
    sample = _sample(np.asarray(values), nodata)
    problem = rule(spec, sample) if sample.size >= 100 else None
    if problem is None:
        return
    message, certain = problem
    if certain:
        raise InputError(f"{message}. If the values are right, {CHECK_INPUT_OFF}")
    # one place of issue: Python shows it once, not once per region task
    warnings.warn(f"{message}. To silence this, {CHECK_INPUT_OFF}", InputWarning, stacklevel=1)


def _sample(values: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """``(band, n)`` float64 values on a stride over y and x, NaN where invalid (not finite or nodata)."""
    step = max(1, math.isqrt(values.shape[-2] * values.shape[-1]) // SAMPLE_SIDE)
    strided = values[..., ::step, ::step]
    bands = np.moveaxis(strided, -3, 0).reshape(strided.shape[-3], -1).astype(np.float64)
    for band, value in zip(bands, nodata, strict=False):
        if value is not None:
            band[band == value] = np.nan
    return bands[:, np.isfinite(bands).any(axis=0)]


def _other_units(pretraining: ModalitySpec, model_spec: ModalitySpec) -> bool:
    """Whether a model's means put its data in other units than pre-training's, band by band (their typical ratio
    beyond 5x either way; a fine-tuning's own statistics in the same units stay well within that)."""
    before = dict(zip(pretraining.bands, pretraining.mean, strict=True))
    ratios = [abs(m / before[b]) for b, m in zip(model_spec.bands, model_spec.mean, strict=True) if before.get(b)]
    return bool(ratios) and not 0.2 <= float(np.median(ratios)) <= 5


def _fine_tuning_units(spec: ModalitySpec, sample: np.ndarray):
    """Each band's median against the statistics the model was fine-tuned with (``spec``: the model's input)."""
    medians = np.nanmedian(sample, axis=1)
    for band, median, mean, std in zip(spec.bands, medians, spec.mean, spec.std, strict=True):
        if abs(median - mean) > 10 * std:
            ratios = [m / u for m, u in zip(medians, spec.mean, strict=True) if u and m / u > 0]
            typical = float(np.median(ratios)) if ratios else 0.0
            scale = (f"; the values are typically {float(f'{typical:.2g}'):,g}x its means" if typical > 5 or 0 < typical < 0.2
                     else "")
            return (f"{spec.name} {band} has median {median:.4g}, far from the data this model was fine-tuned on "
                    f"(its config's mean {mean:.4g}, std {std:.3g}){scale}: give the cube in the units of the "
                    "fine-tuning data (e.g. reflectance 0-1 is cube / 10000)"), True
    return None


def _means(spec) -> str:
    return f"{min(spec.mean):.4g} to {max(spec.mean):.4g}" if spec.channels > 1 else f"{spec.mean[0]:.4g}"


def _reflectance(spec, sample):
    top = np.nanpercentile(sample, 99)
    if 0 < top < 100:  # whole windows darker than 1 % reflectance do not occur; 0-1 or percent scales do
        return (f"{spec.name} values look far too small for reflectance x 10000: 99% of them are below {top:.3g}, "
                f"while TerraMind's training data has band means of {_means(spec)}. Reflectance on a 0-1 scale? "
                f"multiply by 10000 (cube * 10000); in percent? multiply by 100"), True
    if top > 25000:  # 5 x the brightest band's mean + std; real reflectance x 10000 stays below ~16000
        return (f"{spec.name} values look far too large for reflectance x 10000: 1% of them are above {top:.3g}, "
                f"while TerraMind's training data has band means of {_means(spec)}. Scaled twice? divide by the "
                f"extra factor (e.g. cube / 10)"), True
    bottom = np.nanpercentile(sample, 1)
    if bottom < -100:  # reflectance is not negative beyond noise: a wrong offset, wrapped integers or a nodata value
        return (f"{spec.name} values go far below 0 for reflectance x 10000: 1% of them are below {bottom:.4g}. "
                "An offset applied twice or wrongly (Sentinel-2's BOA_ADD_OFFSET of -1000 is removed once; "
                "xterramind.stac.load does it), integers that wrapped around when cast, or an undeclared nodata "
                "value (-9999)? fix the offset or the cast, or declare the nodata value with "
                "cube.rio.write_nodata(value) or set it to NaN"), True
    return None


def _rgb(spec, sample):
    top = np.nanpercentile(sample, 99)
    if 0 < top <= 1:
        return (f"RGB values all lie within 0-1, but TerraMind's RGB is 8-bit (0-255; training means "
                f"{_means(spec)}): multiply by 255"), True
    if top > 256:
        return (f"RGB values go up to {top:.4g} (99th percentile), but TerraMind's RGB is 8-bit (0-255; training "
                f"means {_means(spec)}): stretch them to 0-255 first, e.g. (rgb / rgb.quantile(0.99) * 255).clip(0, 255); "
                f"Sentinel-2 reflectance is better given with all its bands as S2L2A or S2L1C"), True
    return None


def _backscatter(spec, sample):
    if np.nanmin(sample) >= 0:  # dB is negative almost everywhere (VH always); linear power never is
        return (f"{spec.name} values are all >= 0 (median {float(np.nanmedian(sample)):.3g}): that is linear "
                "backscatter, but TerraMind expects dB. Convert with 10 * np.log10(x) (xterramind.stac.load does "
                "it for STAC items)"), True
    for band, values, mean, std in zip(spec.bands, sample, spec.mean, spec.std, strict=True):
        median = np.nanmedian(values)
        if abs(median - mean) > 10 * std:
            return (f"{spec.name} {band} has median {median:.4g}, far from backscatter in dB (TerraMind's training "
                    f"mean {mean:.4g} dB, std {std:.3g}): stored as scaled dB (e.g. dB x 100)? divide by that factor"), True
    return None


def _elevation(spec, sample):
    if np.nanpercentile(sample, 1) < -1000:  # no land lies below -430 m (the Dead Sea)
        return ("DEM values go below -1000 m: an undeclared nodata value (-9999, -32768)? declare it with "
                "cube.rio.write_nodata(value) or set it to NaN"), True
    if np.nanmedian(sample) > 9000:  # above Everest in metres
        return (f"DEM values have median {np.nanmedian(sample):.4g}, above any height on Earth in metres (TerraMind's "
                f"training mean {_means(spec)} m): in cm or dm? convert to metres (dem / 100, dem / 10)"), True
    if 0 < np.nanmax(np.abs(sample)) < 9:  # below Everest's 8.8 in km, but also a lowland in metres: only a warning
        return ("DEM values all lie within +-9: if the DEM is in km, multiply by 1000 (TerraMind expects metres; "
                f"training mean {_means(spec)} m); a lowland in metres is fine"), False
    return None


_UNIT_RULES = {"S2L1C": _reflectance, "S2L2A": _reflectance, "RGB": _rgb, "S1GRD": _backscatter,
               "S1RTC": _backscatter, "DEM": _elevation}


def check_grid(grid: PixelGrid, what: str, pixel_size: float, *, check_resolution: bool = True) -> None:
    """Refuse grids TerraMind cannot read right: a geographic CRS (pixels in degrees) always, and, unless
    ``check_resolution`` is off, ground pixels more than 1.5x away from ``pixel_size`` (10 m): a token is
    16 pixels, so at 20 m it covers 4x the ground the model learnt a token to be.

    Example:
        >>> check_grid(grid_of(xterramind.open_sample(), "sample"), "the sample", 10.0)   # 10 m UTM: fine
    """
    crs = CRS.from_user_input(grid.crs)
    t = grid.transform
    if crs.is_geographic:
        raise InputError(
            f"{what} is in a geographic CRS ({crs.name}): its pixels are {abs(t.a):.3g} degrees, but TerraMind's "
            f"tiles and token grid need metres ({pixel_size:g} m pixels). Reproject it first, e.g. "
            f"cube.rio.reproject(cube.rio.estimate_utm_crs(), resolution={pixel_size:g}) (xterramind.stac.load "
            "loads STAC items on a UTM grid)"
        )
    if not check_resolution or not crs.is_projected:
        return
    metres = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    size = np.array([math.hypot(t.a, t.d), math.hypot(t.b, t.e)]) * metres / _scale(crs, grid)
    if (size > 1.5 * pixel_size).any() or (size < pixel_size / 1.5).any():
        raise InputError(
            f"{what} has {size[0]:.3g} m x {size[1]:.3g} m pixels on the ground, but TerraMind was trained on "
            f"{pixel_size:g} m pixels (a token is 16 px = {16 * pixel_size:g} m): at other scales its embeddings and "
            f"generations are off. Resample first, e.g. cube.rio.reproject(cube.rio.crs, resolution={pixel_size:g}) "
            f"(xterramind.stac.load(..., resolution={pixel_size:g}); in a run config: resolution: {pixel_size:g}), or, "
            f"if you mean it, {CHECK_INPUT_OFF}"
        )


def _scale(crs: CRS, grid: PixelGrid) -> np.ndarray:
    """The projection's (parallel, meridional) scale at the grid's centre: projected metres per ground metre
    (1 in UTM, 2 at 60 degrees north in Web Mercator)."""
    x, y = grid.transform * (grid.width / 2, grid.height / 2)
    try:
        lon, lat = transformer(grid.crs, "EPSG:4326").transform(x, y)
        factors = Proj(crs).get_factors(lon, lat)
        scale = np.array([factors.parallel_scale, factors.meridional_scale])
    except (ProjError, RuntimeError):
        return np.ones(2)
    return scale if np.isfinite(scale).all() and (scale > 0).all() else np.ones(2)


def _check_same_grid(inputs: list[ModalityInput]) -> None:
    grids = [grid_of(item.data, item.spec.name) for item in inputs]
    for item, grid in zip(inputs[1:], grids[1:], strict=True):
        if not grid.same_as(grids[0]):
            first = inputs[0].spec.name
            raise GridMismatchError(
                f"{item.spec.name} and {first} are on different pixel grids ({grid.height} x {grid.width} px, "
                f"transform {tuple(map(float, grid.transform))[:6]} vs {grids[0].height} x {grids[0].width} px, "
                f"{tuple(map(float, grids[0].transform))[:6]}; same CRS: {same_crs(grid.crs, grids[0].crs)}). Put them on one "
                f"grid first, e.g. {item.spec.name.lower()} = {item.spec.name.lower()}.rio.reproject_match({first.lower()})"
            )
    times = {item.data.sizes.get("time") for item in inputs}
    if len(times) > 1:
        raise InputError(f"the modalities have different numbers of time steps {sorted(map(str, times))}; align them first")

