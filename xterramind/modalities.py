"""From a cube to TerraMind's modalities: band names, band order, nodata, and one shared pixel grid.

Bands are found by name. The alias tables cover the usual conventions: Sentinel-2 ``B01``…``B12``
(also ``B1``, ``B02_10m`` SAFE-style), Earth Search (``coastal``, ``blue``, …, ``rededge1``, ``nir08``,
``swir16``, ``cirrus``), Planetary Computer (``B01``…), Sentinel-1 ``vv``/``vh``, and DEM
(``dem``, ``elevation``). Without an explicit ``modalities=`` the cube's bands decide: all 13
Sentinel-2 bands (B10, cirrus, exists only in L1C products) mean S2L1C, the 12 without B10 mean
S2L2A; VV and VH mean S1GRD; a DEM band means DEM.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import xarray as xr

from .errors import InputError, UnknownModalityError
from .grid import PixelGrid, same_crs
from .models.registry import MODALITIES, ModalitySpec, resolve_modality

S2_ALIASES = {
    "B01": ("coastal", "coastal_aerosol", "aerosol"),
    "B02": ("blue",),
    "B03": ("green",),
    "B04": ("red",),
    "B05": ("rededge1", "red_edge_1", "rededge"),
    "B06": ("rededge2", "red_edge_2"),
    "B07": ("rededge3", "red_edge_3"),
    "B08": ("nir", "nir_broad"),
    "B8A": ("nir08", "nir_narrow", "rededge4", "red_edge_4"),
    "B09": ("nir09", "water_vapor", "water_vapour"),
    "B10": ("cirrus",),
    "B11": ("swir16", "swir_1", "swir1"),
    "B12": ("swir22", "swir_2", "swir2"),
}
S1_ALIASES = {"VV": ("sigma0_vv", "gamma0_vv"), "VH": ("sigma0_vh", "gamma0_vh")}
DEM_ALIASES = {"DEM": ("elevation", "height", "copdem")}
RGB_ALIASES = {"RED": ("red", "b04", "r"), "GREEN": ("green", "b03", "g"), "BLUE": ("blue", "b02", "b")}

# Modalities found automatically, in the order they are looked for; RGB and S1RTC only on request.
AUTO = ("S2L1C", "S2L2A", "S1GRD", "DEM")


def _key(name) -> str:
    """A band name reduced for matching: lower case, no resolution suffix (``B02_10m``), ``B1`` -> ``b01``."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    key = re.sub(r"_(10|20|60)m$", "", key)
    return re.sub(r"^b(\d)$", r"b0\1", key)


def _alias_table(spec: ModalitySpec) -> dict[str, str]:
    """Matching key -> the modality's own band name."""
    table = RGB_ALIASES if spec.name == "RGB" else {**S2_ALIASES, **S1_ALIASES, **DEM_ALIASES}
    keys = {}
    for band in spec.bands:
        for alias in (band, *table.get(band, ())):
            keys[_key(alias)] = band
    return keys


def canonical_bands(names: Sequence) -> dict[str, object]:
    """The given band names keyed by the canonical names they stand for (``B04``, ``VV``, ``DEM``, and ``RED``,
    ``GREEN``, ``BLUE`` for any red, green and blue band), for the names the alias tables know.

    Example:
        >>> canonical_bands(["red", "green", "blue", "nir"])["B08"]
        'nir'
    """
    tables = [_alias_table(resolve_modality(modality)) for modality in ("S2L1C", "S1GRD", "DEM", "RGB")]
    found = {}
    for name in names:
        for table in tables:
            band = table.get(_key(name))
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
        return [name for name, var in cube.data_vars.items() if {"y", "x"} <= set(var.dims)]
    if "band" not in cube.dims:
        return [cube.name] if cube.name is not None else []
    labels = list(cube["band"].values) if "band" in cube.coords else []
    descriptions = cube.attrs.get("long_name")
    unnamed = not labels or not isinstance(labels[0], str)
    if unnamed and isinstance(descriptions, (tuple, list)) and len(descriptions) == cube.sizes["band"]:
        return list(descriptions)  # rioxarray keeps GeoTIFF band descriptions here
    return labels


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
    table = _alias_table(spec)
    found = {}
    for name in names:
        band = table.get(_key(name))
        if band is not None and band not in found:
            found[band] = name
    return [found[b] for b in spec.bands if b in found], [b for b in spec.bands if b not in found]


def resolve(
    cube: xr.Dataset | xr.DataArray, modalities: Sequence[str] | Mapping | None = None
) -> list[ModalityInput]:
    """The modalities to feed the model, each as a DataArray in model band order.

    ``modalities`` may be ``None`` (found from band names), a list of modality names, or a mapping
    from modality name to either a list of the cube's band names in the model's band order, or
    another cube holding that modality (it must be on the same pixel grid).
    """
    _check_cube(cube, "the cube")
    requests = _requests(cube, modalities)
    inputs = []
    for spec, source, bands in requests:
        _check_cube(source, f"the {spec.name} cube")
        names = _band_names(source)
        if bands is None:
            bands, missing = _find(source, spec)
            if missing:
                raise InputError(
                    f"{spec.name} needs bands {list(spec.bands)}; missing {missing} (the cube has {names}). "
                    f"Add them, or name the cube's bands for {spec.name} explicitly: "
                    f"modalities={{'{spec.name}': [<{spec.channels} band names in this order>]}}"
                )
        else:
            unknown = [b for b in bands if b not in names]
            if unknown or len(bands) != spec.channels:
                raise InputError(
                    f"modalities['{spec.name}'] must list {spec.channels} of the cube's bands in the order "
                    f"{list(spec.bands)}; unknown: {unknown}, the cube has {names}"
                )
        data = _select(source, names, bands)
        if not (np.issubdtype(data.dtype, np.number) and not np.issubdtype(data.dtype, np.complexfloating)):
            raise InputError(f"{spec.name} has dtype {data.dtype}; expected real numbers (ints or floats)")
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
                raise InputError(
                    f"the cube has some {name} bands {bands} but lacks {missing}; add them, or pick bands explicitly "
                    f"with modalities={{'{name}': [...]}}"
                )
        if not found:
            names = [str(name) for name in _band_names(cube)]
            raise InputError(
                f"no TerraMind modality found in the cube's bands {names}: name them like Sentinel-2 (B01…B12, "
                "or blue, red, nir, swir16…), Sentinel-1 (vv, vh) or DEM, or map them with modalities={...}"
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
            requests.append((spec, cube, list(value)))
        else:
            raise InputError(f"modalities['{name}'] must be a list of band names or a cube, got {type(value).__name__}")
    if not requests:
        raise InputError("modalities is empty; pass None to find them from band names")
    return requests


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


def check_units(name: str, values: np.ndarray) -> None:
    """Catch the unit mistakes that can be seen in the data: Sentinel-1 in linear power instead of dB.

    Backscatter in dB is negative almost everywhere (VH always); linear power and amplitude never are.
    A window of many valid values none of which is negative is taken for linear data.
    """
    if name not in ("S1GRD", "S1RTC"):
        return
    finite = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values.ravel()
    if finite.size >= 100 and finite.min() >= 0:
        raise InputError(
            f"{name} values are all >= 0 (median {float(np.median(finite)):.3g}): that is linear backscatter, but "
            f"TerraMind expects dB. Convert with 10 * np.log10(x) (xterramind.stac.load does it for STAC items)"
        )


def grid_of(data: xr.DataArray, what: str) -> PixelGrid:
    """The pixel grid of a georeferenced DataArray; a clear error when it is not georeferenced."""
    crs = data.rio.crs
    if crs is None:
        raise InputError(
            f"{what} has no CRS; set it with .rio.write_crs('EPSG:32633') (the cube's real CRS), "
            "or open the data with rioxarray/odc-stac, which keep it"
        )
    if data.sizes["y"] < 2 or data.sizes["x"] < 2:
        raise InputError(f"{what} is {data.sizes['y']} x {data.sizes['x']} px: too small to infer its grid")
    return PixelGrid(crs.to_wkt(), data.rio.transform(recalc=True), data.sizes["y"], data.sizes["x"])


def _check_same_grid(inputs: list[ModalityInput]) -> None:
    grids = [grid_of(item.data, item.spec.name) for item in inputs]
    for item, grid in zip(inputs[1:], grids[1:], strict=True):
        if not grid.same_as(grids[0]):
            first = inputs[0].spec.name
            raise InputError(
                f"{item.spec.name} and {first} are on different pixel grids ({grid.height} x {grid.width} px, "
                f"transform {tuple(grid.transform)[:6]} vs {grids[0].height} x {grids[0].width} px, "
                f"{tuple(grids[0].transform)[:6]}; same CRS: {same_crs(grid.crs, grids[0].crs)}). Put them on one "
                f"grid first, e.g. {item.spec.name.lower()} = {item.spec.name.lower()}.rio.reproject_match({first.lower()})"
            )
    times = {item.data.sizes.get("time") for item in inputs}
    if len(times) > 1:
        raise InputError(f"the modalities have different numbers of time steps {sorted(map(str, times))}; align them first")

