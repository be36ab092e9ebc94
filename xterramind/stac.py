"""Aligned multi-modal cubes from STAC items, loaded lazily with odc-stac, ready for TerraMind.

``xterramind.stac.load(items, ["S2L2A", "S1GRD", "DEM"], bbox=..., time=...)`` gives one Dataset on one
pixel grid (10 m UTM by default), one variable per band under the names ``modalities.py`` knows
(``B01``…``B12``, ``VV``/``VH``, ``DEM``), in TerraMind's units:

- **Sentinel-2** (S2L2A; S2L1C with B10) from Earth Search (``blue``, ``nir08``, …, ``scl``) or Planetary
  Computer (``B02``, …, ``SCL``) naming. Digital numbers (reflectance x 10000) as TerraMind saw them in
  training: since processing baseline 04.00 (25 January 2022) ESA adds 1000 to every band (the
  ``BOA_ADD_OFFSET`` / ``RADIO_ADD_OFFSET`` of -1000 in the product metadata), and TerraMesh, TerraMind's
  training set, removed that offset ("…with the offset removed…", Blumenstiel et al. 2025, TerraMesh).
  So items with ``s2:processing_baseline`` >= 04.00 have 1000 subtracted, unless the provider already
  did (Earth Search v1 marks that ``earthsearch:boa_offset_applied: true``). Valid pixels stay >= 1, so 0
  remains nodata. With ``mask_clouds`` (default), S2L2A pixels whose scene classification (SCL) is no
  data, saturated, cloud shadow, cloud or cirrus (classes 0, 1, 3, 8, 9, 10) become nodata, which the
  engine skips.
- **Sentinel-1** (S1GRD, S1RTC): VV and VH; linear backscatter is converted to dB (``10 log10``), as
  TerraMind expects. Values that are already negative cannot be linear power: that raises at compute time.
- **DEM** (Copernicus DEM, ``data`` or ``dem`` assets): metres, resampled bilinearly onto the grid.

Sentinel-2's 20 m and 60 m bands, SCL and Sentinel-1 are resampled to the grid by nearest neighbour
(values unchanged, each 20 m pixel becomes 2 x 2); the 10 m bands come back byte-identical.
``time`` picks one date or a range; ``composite="median"`` makes a cloud-masked median over the range.
A request over several UTM zones raises (pass ``crs=``), or use ``load_by_zone`` for one cube per zone.
Items in another CRS than the grid (a neighbouring zone's tiles, a DEM in degrees) are reprojected onto it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import xarray as xr

from .errors import InputError, MissingBandsError, MissingCRSError, MissingDependencyError, OptionError
from .facts import DATA, band_aliases, band_key
from .geo import utm_crs, utm_zone, utm_zones, zone_longitudes
from .grid import PixelGrid
from .models.registry import ModalitySpec, resolve_modality

SCL_MASKED = (0, 1, 3, 8, 9, 10)  # no data, saturated/defective, cloud shadow, cloud medium/high, cirrus
OFFSET = 1000
OFFSET_BASELINE = "04.00"
DEM_ASSETS = ("dem", "elevation", "data")


def load(
    items,
    modalities: Sequence[str] = ("S2L2A",),
    *,
    bbox: Sequence[float] | None = None,
    geometry=None,
    time: str | None = None,
    crs: str | None = None,
    resolution: float = 10,
    composite: str | None = None,
    mask_clouds: bool = True,
    chunks: int = 1024,
    grid: PixelGrid | None = None,
    zone: str | None = None,
) -> xr.Dataset:
    """One lazy, aligned cube of the given modalities from STAC items (see the module docstring).

    Given xterramind product Items (``xterramind.catalog.item``) or an area run's Collection instead, it gives back
    the stored result on its own grid (``xterramind.open``); ``zone`` picks a zone of an area run.

    Args:
        items (pystac.ItemCollection | list | str): a ``pystac.ItemCollection``, a list of items, a
            ``pystac_client`` search, a catalogue, or the path of a static catalogue or item collection.
        modalities: any of ``"S2L2A"``, ``"S2L1C"``, ``"S1GRD"``, ``"S1RTC"``, ``"DEM"``.
        bbox: ``(west, south, east, north)`` in degrees; or ``geometry`` (GeoJSON, lon/lat). Default:
            the items' extent.
        time: ``"2024-06-01"`` or ``"2024-06-01/2024-08-31"``.
        crs: the output CRS; default the UTM zone of the area's centre.
        resolution: pixel size in metres (default 10).
        composite: ``None`` (every date), or ``"median"`` (a cloud-masked median over the dates).
        chunks: dask chunk side in pixels.
        grid: load onto exactly this pixel grid (instead of ``bbox``/``crs``/``resolution``), as a
            planned run's region windows do.

    Example:
        >>> cube = xterramind.stac.load(search, ["S2L2A", "S1GRD"], bbox=(-75.9, 37.5, -75.6, 37.8),
        ...                             time="2024-07-01/2024-07-31", composite="median")
        >>> embeddings = cube.terramind.embed(model)
        >>> lulc = xterramind.stac.load(xterramind.catalog.item("lulc.zarr"))   # a stored result, back
    """
    products = _products(items)
    if products is not None:
        from .catalog import load as load_products

        return load_products(products, zone=zone)
    odc_stac = _odc_stac()
    specs = [loadable(name) for name in modalities]
    if not specs:
        raise OptionError("modalities is empty; name what to load, e.g. ['S2L2A']")
    items = _filter_by_time(as_items(items), time, modalities)
    if grid is None:
        primary = [item for item in items if _provides(item, specs[0])]  # the first modality sets the grid
        crs = crs or _utm_crs(_area(bbox, geometry, primary or items))
        extent, geobox = _extent(bbox, geometry), None
    else:
        from odc.geo.geobox import GeoBox

        geobox = GeoBox(grid.shape, grid.transform, grid.crs)
    parts = []
    for spec in specs:
        chosen = [item for item in items if _provides(item, spec)]
        if not chosen:
            raise MissingBandsError(_missing_message(spec, items))
        _check_projection(chosen, spec)
        assets = _assets(chosen[0], spec)
        wanted = list(assets.values()) + ([_scl_asset(chosen[0])] if spec.name == "S2L2A" and mask_clouds else [])
        kwargs = {"geobox": geobox} if geobox is not None else {"crs": crs, "resolution": resolution, **extent}
        loaded = odc_stac.load(chosen, bands=wanted, chunks={"x": chunks, "y": chunks}, groupby="solar_day",
                               resampling={name: "bilinear" if spec.name == "DEM" else "nearest" for name in wanted},
                               **kwargs)
        geobox = loaded.odc.geobox
        part = _prepare(loaded, spec, assets, chosen, mask_clouds)
        parts.append(part.max("time", keep_attrs=True) if spec.name == "DEM" and "time" in part.dims else part)
    cube = xr.merge(parts, compat="override", join="override", combine_attrs="drop_conflicts")
    cube = _composite(cube, composite) if composite else cube
    if "time" in cube.dims and cube.sizes["time"] == 1 and composite is None:
        cube = cube.isel(time=0)
    for name in [name for name, var in cube.data_vars.items() if "time" in cube.dims and "time" not in var.dims]:
        cube[name] = cube[name].expand_dims(time=cube["time"])  # the DEM, the same on every date
    cube.attrs = {"source": "STAC", "modalities": [spec.name for spec in specs]}
    return cube.rio.write_crs(geobox.crs.to_wkt())  # value edits above may drop the grid-mapping link


def load_by_zone(items, modalities: Sequence[str] = ("S2L2A",), *, bbox: Sequence[float], **options) -> dict[str, xr.Dataset]:
    """One cube per UTM zone that ``bbox`` touches, each on its own zone's grid, keyed by EPSG code.

    For areas across zone boundaries, where ``load`` raises unless ``crs=`` puts everything on one
    grid: here each part stays on its own zone's grid, so Sentinel scenes keep their native UTM pixels.

    Args:
        items (pystac.ItemCollection | list | str): as for ``load``.
        modalities: as for ``load``.
        bbox: ``(west, south, east, north)`` in degrees.
        **options (Any): the other options of ``load`` (``time``, ``composite``, ``resolution``, ...).

    Returns:
        ``{"EPSG:32632": cube, "EPSG:32633": cube, ...}``, west to east.

    Example:
        >>> cubes = xterramind.stac.load_by_zone(search, ["S2L2A"], bbox=(11.0, 46.0, 13.0, 47.0), time="2024-07-14")
        >>> for crs, cube in cubes.items():
        ...     cube.terramind.embed(model).terramind.to_zarr(f"embeddings-{crs[5:]}.zarr")
    """
    west, south, east, north = bbox
    cubes = {}
    for zone in utm_zones(west, east):
        low, high = zone_longitudes(zone)
        part = (max(west, low), south, min(east, high), north)
        crs = utm_crs(zone, (south + north) / 2)
        cubes[crs] = load(items, modalities, bbox=part, crs=crs, **options)
    return cubes


# -- items ----------------------------------------------------------------------------------------------


def _odc_stac():
    try:
        import odc.stac
    except ImportError:
        raise MissingDependencyError("loading STAC items needs odc-stac: pip install odc-stac") from None
    return odc.stac


def _products(items):
    """The pystac objects of ``items`` where they describe xterramind outputs (an Item, Collection or catalogue
    file of them), else None: those load back from their stores, not through odc-stac."""
    import pystac

    from .catalog import is_product

    if isinstance(items, str) or hasattr(items, "__fspath__"):
        try:
            items = pystac.read_file(str(items))
        except Exception:  # not readable here: as_items says why
            return None
    if isinstance(items, pystac.Catalog):  # a catalogue of products holds only products: its first item says
        first = next(iter(items.get_items(recursive=True)), None)
        return list(items.get_items(recursive=True)) if is_product(items) or (
            first is not None and is_product(first)) else None
    if isinstance(items, pystac.Item):
        return [items] if is_product(items) else None
    if isinstance(items, (list, tuple)) and any(isinstance(i, pystac.Item) and is_product(i) for i in items):
        return list(items)
    return None


def as_items(items) -> list:
    """STAC items as a list of ``pystac.Item``, from whatever form ``load`` accepts them in.

    Args:
        items (pystac.ItemCollection | list | str): an ``ItemCollection``, a list of items, a ``pystac_client``
            search, a catalogue, or the path of a static catalogue or item collection.

    Raises:
        InputError: the file cannot be read, or there are no items.
        OptionError: ``items`` are not STAC items.

    Example:
        >>> items = as_items("catalog.json")   # every item of the catalogue, recursively
    """
    import pystac

    if isinstance(items, (str,)) or hasattr(items, "__fspath__"):
        path = str(items)
        try:
            items = pystac.read_file(path)
        except Exception as error:  # pystac raises several types for unreadable or invalid files
            raise InputError(f"cannot read a STAC catalogue or item collection from {path}: {error}") from None
    if hasattr(items, "item_collection"):  # a pystac_client search
        items = items.item_collection()
    if isinstance(items, pystac.Catalog):
        items = items.get_items(recursive=True)
    if isinstance(items, pystac.Item):
        items = [items]
    items = list(items)
    if not items:
        raise InputError("no STAC items: the search or catalogue is empty (check the area, dates and collection)")
    if not all(isinstance(item, pystac.Item) for item in items):
        raise OptionError("items must be pystac Items (an ItemCollection, a search, a catalogue or a list of items)")
    return items


def in_time(items: list, time: str | None) -> list:
    """The items dated within ``time`` (one day, or ``start/end``)."""
    if time is None:
        return items
    start, _, end = str(time).partition("/")
    low = _day(start)
    high = _day(end) if end else low
    return [item for item in items if item.datetime is not None and low <= item.datetime.date() <= high]


def select_time(items: list, time: str | None, modalities: Sequence[str]) -> list:
    """The items dated within ``time``, and the DEM's items whatever their date (when ``modalities`` has a
    DEM): a DEM is dated by its production (Copernicus DEM: 2021-04-22), not by the scene it goes with.

    Example:
        >>> items = select_time(items, "2024-06-01/2024-08-31", ["S2L2A", "DEM"])
    """
    static, dated = _split_static(items, modalities)
    return in_time(dated, time) + static


def _split_static(items: list, modalities: Sequence[str]) -> tuple[list, list]:
    """The items of a DEM (when asked for) and the others."""
    dem = [spec for spec in map(loadable, modalities) if spec.name == "DEM"]
    static = [item for item in items if any(_provides(item, spec) for spec in dem)]
    static_ids = {id(item) for item in static}
    return static, [item for item in items if id(item) not in static_ids]


def _filter_by_time(items: list, time: str | None, modalities: Sequence[str]) -> list:
    static, dated = _split_static(items, modalities)
    kept = in_time(dated, time)
    if dated and not kept:
        dates = sorted({str(item.datetime.date()) for item in dated if item.datetime})
        raise InputError(f"no items in {time}; the items are from {dates[:10]}{' ...' if len(dates) > 10 else ''}")
    return kept + static


def _day(text: str):
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        raise OptionError(f"time must look like 2024-06-01 or 2024-06-01/2024-08-31, got {text!r}") from None


def loadable(name: str) -> ModalitySpec:
    """The spec of a modality that ``load`` can load (those of ``xterramind.facts.DATA``).

    Raises:
        UnknownModalityError: no such modality.
        OptionError: a modality that STAC loading does not cover (RGB, token modalities).

    Example:
        >>> loadable("s2l2a").name
        'S2L2A'
    """
    spec = resolve_modality(name)
    if spec.name not in DATA:
        *first, last = DATA
        raise OptionError(f"STAC loading covers {', '.join(first)} and {last}, not {spec.name}")
    return spec


def _assets(item, spec) -> dict[str, str]:
    """Our band name -> the item's asset key, for every band of the modality the item has."""
    if spec.name == "DEM":
        key = next((k for k in item.assets if band_key(k) in DEM_ASSETS), None)
        return {"DEM": key} if key else {}
    table = band_aliases(spec)
    found = {}
    for key in item.assets:
        band = table.get(band_key(key))
        if band is not None and band not in found:
            found[band] = key
    return {band: found[band] for band in spec.bands if band in found}


def _provides(item, spec) -> bool:
    return len(_assets(item, spec)) == max(spec.channels, 1)


def _missing_message(spec, items) -> str:
    have = sorted(_assets(items[0], spec))
    wanted = list(spec.bands) or ["DEM"]
    missing = [band for band in wanted if band not in have]
    return (f"no item provides every {spec.name} band: the first lacks {missing} (its assets: "
            f"{sorted(items[0].assets)[:16]}). Search the right collection, or drop {spec.name} from modalities")


def _scl_asset(item) -> str:
    key = next((k for k in item.assets if band_key(k) == "scl"), None)
    if key is None:
        raise MissingBandsError("S2L2A cloud masking needs the SCL asset, which the items lack; pass mask_clouds=False to load without it")
    return key


def _check_projection(items, spec) -> None:
    """odc-stac aligns pixels only with the projection extension; without it the grid would be guessed."""
    for item in items:
        code = item.properties.get("proj:code") or item.properties.get("proj:epsg")
        asset_codes = [a.extra_fields.get("proj:code") or a.extra_fields.get("proj:epsg") for a in item.assets.values()]
        if code is None and not any(asset_codes):
            raise MissingCRSError(
                f"item {item.id} has no projection metadata (proj:code or proj:epsg): its pixels cannot be aligned. "
                "Add the STAC projection extension (proj:code, and proj:shape + proj:transform per asset); most "
                "public catalogues (Earth Search, Planetary Computer) have it"
            )


# -- area and grid ----------------------------------------------------------------------------------------


def _area(bbox, geometry, items) -> tuple[float, float, float, float]:
    if bbox is not None and geometry is not None:
        raise OptionError("give bbox or geometry, not both")
    if geometry is not None:
        from shapely.geometry import shape

        bbox = shape(geometry).bounds
    if bbox is None:
        boxes = np.array([item.bbox for item in items if item.bbox is not None])
        if not len(boxes):
            raise InputError("the items have no bbox; pass bbox=(west, south, east, north)")
        bbox = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    west, south, east, north = map(float, bbox)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise OptionError(f"bbox must be (west, south, east, north) in degrees, got {tuple(bbox)}")
    return west, south, east, north


def _extent(bbox, geometry) -> dict:
    """What odc-stac clips to: the user's area, else (nothing) the items' own pixel footprint."""
    if geometry is not None:
        from odc.geo.geom import Geometry

        return {"geopolygon": Geometry(geometry, crs="EPSG:4326")}
    return {"bbox": tuple(bbox)} if bbox is not None else {}


def _utm_crs(area) -> str:
    west, south, east, north = area
    first, last = utm_zone(west), utm_zone(east)
    if first != last or (south < 0 < north):
        raise InputError(
            f"the area spans UTM zones {first}..{last}{' and both hemispheres' if south < 0 < north else ''}: TerraMind "
            "works on one pixel grid. Pass crs= to put everything on one grid (pixels outside it are reprojected), "
            "or use xterramind.stac.load_by_zone(...) for one cube per zone"
        )
    return utm_crs(first, (south + north) / 2)


# -- values -------------------------------------------------------------------------------------------


def _prepare(loaded: xr.Dataset, spec, assets: dict[str, str], items, mask_clouds: bool) -> xr.Dataset:
    """Rename assets to our band names and bring values to TerraMind's units."""
    facts = DATA[spec.name]
    out = {}
    if spec.name in ("S2L2A", "S2L1C"):
        shift = _offset_by_time(loaded, items)
        valid = None
        if spec.name == "S2L2A" and mask_clouds:
            scl = loaded[_scl_asset(items[0])]
            valid = ~scl.isin(SCL_MASKED)
        for band, key in assets.items():
            values = loaded[key]
            harmonized = xr.where(values == 0, 0, values.clip(min=OFFSET + 1) - OFFSET).astype(values.dtype)
            values = xr.where(shift, harmonized, values) if shift is not None else values
            if valid is not None:
                values = values.where(valid, 0)
            out[band] = values.astype(loaded[key].dtype).assign_attrs(facts.attrs)
    elif spec.name in ("S1GRD", "S1RTC"):
        for band, key in assets.items():
            out[band] = _to_db(loaded[key]).assign_attrs(facts.attrs)
    else:
        values = loaded[assets["DEM"]].astype(facts.dtype)
        nodata = loaded[assets["DEM"]].attrs.get("nodata")
        out["DEM"] = (values.where(values != nodata) if nodata is not None else values).assign_attrs(facts.attrs)
    return xr.Dataset(out)


def _offset_by_time(loaded: xr.Dataset, items) -> xr.DataArray | None:
    """True for the dates whose items carry ESA's +1000 offset that the provider has not removed."""
    days = {}
    for item in items:
        baseline = str(item.properties.get("s2:processing_baseline", "00.00"))
        applied = bool(item.properties.get("earthsearch:boa_offset_applied", False))
        offset = _baseline(baseline) >= _baseline(OFFSET_BASELINE) and not applied
        day = item.datetime.astimezone(UTC).date() if item.datetime else None
        days[day] = days.get(day, False) or offset
    if not any(days.values()):
        return None
    flags = [days.get(np.datetime64(t, "D").astype(object), False) for t in loaded["time"].values]
    return xr.DataArray(np.asarray(flags), dims="time", coords={"time": loaded["time"]})


def _baseline(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2]) or (0,)


def _to_db(values: xr.DataArray) -> xr.DataArray:
    """Linear backscatter -> dB; a negative value means the input was dB already, which raises."""
    return xr.apply_ufunc(_linear_to_db, values.astype("float32"), dask="parallelized", output_dtypes=[np.float32])


def _linear_to_db(block: np.ndarray) -> np.ndarray:
    if np.nanmin(block, initial=0.0) < 0:
        raise InputError(
            "Sentinel-1 values below zero cannot be linear backscatter: these look like dB already. "
            "Load dB data directly as VV/VH in dB, not through the linear-to-dB conversion"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(block > 0, 10 * np.log10(block), np.nan).astype(np.float32)


def _composite(cube: xr.Dataset, method: str) -> xr.Dataset:
    if method != "median":
        raise OptionError(f"composite must be None or 'median', got {method!r}")
    if "time" not in cube.dims:
        return cube
    out = {}
    for name, values in cube.data_vars.items():
        if "time" not in values.dims:  # a DEM
            out[name] = values
            continue
        nodata = values.attrs.get("nodata")
        floats = values.astype("float32")
        floats = floats.where(floats != nodata) if nodata is not None else floats
        median = floats.chunk({"time": -1}).median("time", skipna=True)
        median.attrs = {k: v for k, v in values.attrs.items() if k != "nodata"}  # replaced: reductions keep attrs
        out[name] = median
    return xr.Dataset(out, attrs=cube.attrs)


__all__ = ["load", "load_by_zone", "select_time"]
