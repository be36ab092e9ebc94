"""STAC Items and Collections for what xterramind writes: zarr stores, area runs and COG files.

The people who receive a result find and load it with STAC tools (a STAC browser, pystac, odc-stac), so every
output can be described by a STAC 1.1 Item:

- the ``zarr`` asset (``application/vnd+zarr``) with the xarray-assets extension's ``xarray:open_kwargs``, which
  ``xterramind.stac.load`` (and ``xarray.open_zarr(href, **open_kwargs)``) opens as the stored result;
- one asset per variable whose href is GDAL's ``ZARR:"<absolute path>":/<zone>/<variable>``, each with its own
  ``proj:shape``/``proj:transform`` and STAC 1.1 ``bands`` (data type, nodata, unit, name): what ``odc.stac.load``
  reads through rasterio (odc-stac ignores the zarr folder itself, a media type it cannot read);
- the projection extension v2 (``proj:code``, or ``proj:wkt2`` without an EPSG code), the exact footprint
  (the grid's bounds in WGS 84, densified until the reprojected edges are within ``FOOTPRINT_TOLERANCE`` of a
  pixel), the store's time range or its write time;
- the provenance every result carries (``xterramind:model``, ``xterramind:weights``, ...), for embeddings the
  ``emb:`` fields of the embeddings extension, and for a model with a public checkpoint the ML Model extension's
  ``mlm:`` fields.

``write`` saves a self-contained static catalogue next to the store, with relative hrefs.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import geozarr
from .embed import INT8_DECODING, INT8_NODATA, SCALE
from .errors import InputError, MissingDependencyError, StoreError, UnknownModelError
from .geo import grid_of, transformer
from .grid import PixelGrid, same_crs
from .store import LEDGER, RUN_ATTR, group_attrs, open_result

__all__ = ["FOOTPRINT_TOLERANCE", "PRODUCT_FLAG", "cog_item", "collection", "footprint", "is_product", "item", "load",
           "write", "write_cog_item"]

PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
XARRAY = "https://stac-extensions.github.io/xarray-assets/v1.0.0/schema.json"
MLM = "https://stac-extensions.github.io/mlm/v1.5.2/schema.json"
EMBEDDINGS = "https://stac-extensions.github.io/embeddings/v0.0.1/schema.json"
ZARR_MEDIA_TYPE = "application/vnd+zarr"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
ZARR_ASSET = "zarr"
PRODUCT_FLAG = "xterramind:version"
"""The property that marks an Item or Collection as an xterramind product."""
FOOTPRINT_TOLERANCE = 0.01
"""Pixels: how far an Item's footprint, projected back, may stray from the grid's edges."""
PROVENANCE = ("model", "weights", "modalities", "seed", "product", "layer", "merge", "targets", "task",
              "tile_size", "overlap", "patch_size")  # result attributes that reach the Item as ``xterramind:*``


def _pystac():
    try:
        import pystac
    except ImportError:
        raise MissingDependencyError("STAC metadata needs pystac: pip install pystac") from None
    return pystac


# -- Items for stores --------------------------------------------------------------------------------------


def item(store: str | os.PathLike, *, zone: str | None = None, href: str | None = None, id: str | None = None,
         datetime: dt.datetime | None = None):
    """The STAC Item of a store written by ``to_zarr``, or of one zone of an area run's store.

    Reads only metadata and coordinates (lazily opened), so it is as fast for a continent as for a tile.

    Args:
        store: the store's path.
        zone: the zone of an area run's store (a run of one zone needs none).
        href: the zarr asset's href as readers should see it (default: the store's absolute path).
        id: the Item's id (default: the store's name, and the zone).
        datetime: the Item's datetime for a store without a ``time`` coordinate (default: its write time).

    Raises:
        StoreError: not a store xterramind wrote, or a run store without a valid ``zone``.

    Example:
        >>> stac_item = xterramind.catalog.item("lulc.zarr")
        >>> odc.stac.load([stac_item], bands=["LULC"])      # or xterramind.stac.load(stac_item)
    """
    pystac = _pystac()
    path, zone = _resolve(store, zone)
    result = open_result(path, zone=zone)
    dataset = result.to_dataset().assign_attrs(result.attrs) if hasattr(result, "to_dataset") else result
    grid = grid_of(dataset[next(iter(dataset.data_vars))], f"the store {path}")
    geometry, bbox = footprint(grid)
    written = _write_time(path, zone)
    properties = {PRODUCT_FLAG: str(dataset.attrs.get("xterramind_version", "unknown")),
                  **_provenance(dataset.attrs), **_times(dataset, datetime or written), "created": _iso(written),
                  **_projection(grid)}
    stac_item = pystac.Item(id or _item_id(path, zone), geometry, bbox, _moment(properties["datetime"]), properties,
                            stac_extensions=[PROJECTION, XARRAY])
    stac_item.add_asset(ZARR_ASSET, _zarr_asset(pystac, href or str(path.resolve()), zone))
    for name, var in dataset.data_vars.items():
        stac_item.add_asset(name, _variable_asset(pystac, path, zone, name, var, grid))
    if dataset.attrs.get("product") == "embeddings":
        stac_item.properties |= _embedding_fields(dataset, grid)
        stac_item.stac_extensions.append(EMBEDDINGS)
    _add_model(stac_item, dataset)
    return stac_item


def _resolve(store, zone: str | None) -> tuple[Path, str | None]:
    """The store's path and the zone to describe; a clear error for what is not a store of results."""
    path = Path(store).expanduser()
    root = group_attrs(path)
    if root is None:
        raise StoreError(f"{path} is not a zarr store: make its Item from a store written by to_zarr or xterramind "
                         "run")
    zones = sorted(root.get(RUN_ATTR, {}).get("zones", {}))
    if zones:
        zone = zone if zone is not None or len(zones) > 1 else zones[0]
        if zone not in zones:
            raise StoreError(f"{path} is an area run with zones {zones}: describe one with zone=, e.g. "
                             f"zone={zones[0]!r}, or all of them with xterramind.catalog.collection({str(path)!r})")
    elif zone is not None:
        raise StoreError(f"{path} is a single store, not an area run: it has no zones; leave out zone=")
    if "fingerprint" not in (group_attrs(path, f"{zone}/{LEDGER}" if zone else LEDGER) or {}):
        raise StoreError(f"{path} is not a store xterramind wrote (it has no {LEDGER} ledger): STAC Items are made "
                         "for the stores of to_zarr and xterramind run")
    return path, zone


def _item_id(path: Path, zone: str | None) -> str:
    name = path.name.removesuffix(".zarr") or "result"
    return f"{name}-{zone}" if zone else name


def _write_time(path: Path, zone: str | None) -> dt.datetime:
    """When the template was written: its metadata file's time (it never changes after)."""
    folder = path / zone if zone else path
    stamps = [(folder / name).stat().st_mtime for name in (".zattrs", "zarr.json", ".zgroup") if (folder / name).exists()]
    return dt.datetime.fromtimestamp(min(stamps) if stamps else folder.stat().st_mtime, tz=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _moment(text: str | None) -> dt.datetime | None:
    """An ISO time (a date alone is its midnight), in UTC where it says no zone; None for None."""
    if text is None:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _times(dataset, fallback: dt.datetime) -> dict:
    """``datetime`` (one date), or ``start_datetime``/``end_datetime`` over the store's ``time`` coordinate."""
    if "time" not in dataset.coords or dataset["time"].size == 0:
        return {"datetime": _iso(fallback)}
    times = np.asarray(dataset["time"].values).ravel().astype("datetime64[ms]")
    first, last = (dt.datetime.fromisoformat(str(t)).replace(tzinfo=dt.UTC) for t in (times.min(), times.max()))
    if first == last:
        return {"datetime": _iso(first)}
    return {"datetime": None, "start_datetime": _iso(first), "end_datetime": _iso(last)}


def _provenance(attrs: dict) -> dict:
    wanted = {k: attrs[k] for k in PROVENANCE if k in attrs}
    return {f"xterramind:{k}": (v.tolist() if hasattr(v, "tolist") else v) for k, v in wanted.items()}


def _projection(grid: PixelGrid) -> dict:
    """The projection extension v2 fields of a grid (``proj:wkt2`` where the CRS has no EPSG code): the CRS and
    bbox as the store's GeoZarr attributes give them (the same ``proj:`` names)."""
    geo = geozarr.attributes(grid.crs, grid.transform, grid.shape)
    identity = {"proj:code": geo["proj:code"]} if "proj:code" in geo else {"proj:code": None,
                                                                          "proj:wkt2": geo["proj:wkt2"]}
    return identity | {"proj:bbox": geo["spatial:bbox"], **_grid_fields(grid)}


def _grid_fields(grid: PixelGrid) -> dict:
    return {"proj:shape": [grid.height, grid.width], "proj:transform": [float(v) for v in tuple(grid.transform)[:6]]}


# -- footprint ---------------------------------------------------------------------------------------------


def footprint(grid: PixelGrid, tolerance: float = FOOTPRINT_TOLERANCE) -> tuple[dict, list[float]]:
    """The grid's outline in WGS 84 (GeoJSON polygon) and its bbox: the edges densified until each lon/lat
    segment, projected back, strays less than ``tolerance`` pixels from the grid's edge (so a reader that
    reprojects the footprint gets the grid's bounds, to well under a pixel).

    Example:
        >>> geometry, bbox = footprint(PixelGrid("EPSG:32632", Affine(10, 0, 500_000, 0, -10, 5_000_000), 1000, 1000))
        >>> len(geometry["coordinates"][0]) >= 5
        True
    """
    limit = tolerance * abs(grid.transform.a)
    ring = _densified_ring(grid, limit)
    lon, lat = transformer(grid.crs, "EPSG:4326").transform(ring[:, 0], ring[:, 1])
    coords = [[float(x), float(y)] for x, y in zip(lon, lat, strict=True)]
    return ({"type": "Polygon", "coordinates": [coords]},
            [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))])


def _densified_ring(grid: PixelGrid, limit: float) -> np.ndarray:
    """The grid's outline (projected, closed, counter-clockwise) with enough points per edge that the straight
    lon/lat segments between them map back within ``limit`` of the edge; points double until they do."""
    west, north = grid.transform * (0, 0)
    east, south = grid.transform * (grid.width, grid.height)
    corners = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    to_lonlat, back = transformer(grid.crs, "EPSG:4326"), transformer("EPSG:4326", grid.crs)
    edges = []
    for (x0, y0), (x1, y1) in itertools.pairwise(corners):
        steps = 1
        while True:
            t = np.linspace(0, 1, steps + 1)
            xs, ys = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
            lon, lat = to_lonlat.transform(xs, ys)
            mx, my = back.transform((lon[:-1] + lon[1:]) / 2, (lat[:-1] + lat[1:]) / 2)  # lon/lat chords' midpoints
            stray = np.abs(my - y0) if y0 == y1 else np.abs(mx - x0)
            if float(stray.max()) <= limit or steps >= 1 << 16:
                break
            steps *= 2
        edges.append(np.column_stack([xs[:-1], ys[:-1]]))
    ring = np.concatenate(edges)
    return np.vstack([ring, ring[:1]])


# -- assets ------------------------------------------------------------------------------------------------


def _zarr_asset(pystac, href: str, zone: str | None):
    open_kwargs = {"engine": "zarr", "decode_coords": "all", "consolidated": True} | ({"group": zone} if zone else {})
    return pystac.Asset(href, title="the stored result (xterramind.open, or xarray.open_dataset with open_kwargs)",
                        media_type=ZARR_MEDIA_TYPE, roles=["data"], extra_fields={"xarray:open_kwargs": open_kwargs})


def _variable_asset(pystac, path: Path, zone: str | None, name: str, var, grid: PixelGrid):
    """One variable as GDAL reads it (``ZARR:"path":/zone/name``): what odc-stac and rasterio open."""
    inside = f"/{zone}/{name}" if zone else f"/{name}"
    return pystac.Asset(f'ZARR:"{path.resolve()}":{inside}', title=f"{name} through GDAL's Zarr driver",
                        description=var.attrs.get("long_name"), roles=["data"],
                        extra_fields={**_grid_fields(grid), "bands": _bands(name, var)})


def _bands(name: str, var) -> list[dict]:
    """STAC 1.1 ``bands`` of a variable as stored: its leading dimension's entries are bands (GDAL's view)."""
    stored = np.dtype(var.encoding.get("dtype", var.dtype))
    nodata = var.attrs.get("nodata", var.encoding.get("_FillValue"))
    common = {"data_type": _data_type(stored)} | ({"nodata": _nodata(nodata)} if nodata is not None else {})
    common |= {"unit": var.attrs["units"]} if "units" in var.attrs else {}
    extra = [d for d in var.dims if d not in ("y", "x", "time")]
    labels = [name] if not extra else var.attrs.get("class_names") or [
        f"{name}_{int(v)}" if np.issubdtype(np.asarray(v).dtype, np.integer) else f"{name}_{v}"
        for v in var[extra[0]].values]
    if "time" in var.dims:  # GDAL's bands run over the dates first, then the labels: one band per date and label
        dates = [str(np.datetime_as_string(t, unit="D")) for t in var["time"].values]
        labels = [f"{label} {date}" for date in dates for label in labels]
    return [{"name": str(label), **common} for label in labels]


def _data_type(dtype: np.dtype) -> str:
    return {"f": "float", "i": "int", "u": "uint"}[dtype.kind] + str(dtype.itemsize * 8)


def _nodata(value):
    """A nodata value as STAC writes it: NaN and infinities as the strings "nan", "inf", "-inf"."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


# -- embeddings and the model ------------------------------------------------------------------------------


def _embedding_fields(dataset, grid: PixelGrid) -> dict:
    """The embeddings extension's fields: one vector per 16-px token on a regular grid, quantization if any."""
    codes = dataset["embeddings"]
    stored = np.dtype(codes.encoding.get("dtype", codes.dtype))
    patch = int(dataset.attrs.get("patch_size", 16))
    fields = {
        "emb:type": "chip",
        "emb:dimensions": int(codes.sizes["embedding"]),
        "emb:data_type": _data_type(stored),
        "emb:model": str(dataset.attrs.get("model")),
        "emb:source_data": list(dataset.attrs.get("modalities", [])),
        "emb:gsd": abs(grid.transform.a),
        "emb:chip_layout": {"layout_type": "regular_grid", "chip_size": [patch, patch], "stride": [patch, patch],
                            "tile_size": dataset.attrs.get("tile_size"), "tile_overlap": dataset.attrs.get("overlap")},
    }
    if stored == np.int8:
        fields["emb:quantization"] = {
            "method": "unit vector, square-root companded (AlphaEarth Foundations)", "original_dtype": "float32",
            "quantized_dtype": "int8", "decoding": INT8_DECODING, "nodata": INT8_NODATA,  # q's; its scale's is NaN
            "scale": {"type": "array", "array_name": SCALE, "nodata": "nan"}}
    return fields


def _add_model(stac_item, dataset) -> None:
    """The ML Model extension's fields, where the model has a public checkpoint to point the model asset at."""
    from .models.registry import get_config

    try:
        config = get_config(str(dataset.attrs.get("model")))
    except UnknownModelError:  # a model this version does not know (a store written by another one): no model metadata
        return
    if not config.hub_repo:
        return
    pystac = _pystac()
    random = dataset.attrs.get("weights") == "random"
    stac_item.properties |= {
        "mlm:name": config.name, "mlm:architecture": "TerraMind (multimodal encoder-decoder vision transformer)",
        "mlm:tasks": _tasks(dataset.attrs.get("product")), "mlm:framework": "pytorch", "mlm:pretrained": not random,
        "mlm:input": [{"name": name, "input": {"shape": [-1, -1, config.image_size, config.image_size],
                                               "dim_order": ["batch", "channel", "height", "width"],
                                               "data_type": "float32"}}
                      for name in dataset.attrs.get("modalities", [])] or [_any_input(config)],
        "mlm:output": [{"name": str(name), "tasks": _tasks(dataset.attrs.get("product")),
                        "result": {"shape": [-1, *(int(s) for s in var.shape)], "dim_order": ["batch", *var.dims],
                                   "data_type": _data_type(np.dtype(var.encoding.get("dtype", var.dtype)))}}
                       for name, var in dataset.data_vars.items()],
    }
    title = "the architecture's official checkpoint" + (" (not used: this result has random weights)" * random)
    stac_item.add_asset("model", pystac.Asset(f"https://huggingface.co/{config.hub_repo}", title=title,
                                              roles=["mlm:model"], extra_fields={"mlm:artifact_type": "torch.save"}))
    stac_item.stac_extensions.append(MLM)


def _any_input(config) -> dict:
    return {"name": "input", "input": {"shape": [-1, -1, config.image_size, config.image_size],
                                       "dim_order": ["batch", "channel", "height", "width"], "data_type": "float32"}}


def _tasks(product) -> list[str]:
    return {"embeddings": ["similarity-search"], "generation": ["generative", "semantic-segmentation"],
            "prediction": ["semantic-segmentation"]}.get(product, ["generative"])


# -- Collections and catalogues ----------------------------------------------------------------------------


def collection(run_store: str | os.PathLike, *, id: str | None = None, description: str | None = None,
               license: str = "other", href: str | None = None):
    """The STAC Collection of an area run's store: one Item per zone, the extent over all of them.

    Args:
        run_store: the path of the store ``xterramind run`` wrote.
        id: the Collection's id (default: the store's name).
        description: what it is (default: the product and model).
        license: an SPDX identifier, or ``"other"``.
        href: the store's href as readers should see it (default: its absolute path).

    Raises:
        StoreError: not an area run's store.

    Example:
        >>> europe = xterramind.catalog.collection("europe.zarr")
        >>> xterramind.stac.load(europe, zone="utm32n")
    """
    pystac = _pystac()
    path = Path(run_store).expanduser()
    zones = sorted((group_attrs(path) or {}).get(RUN_ATTR, {}).get("zones", {}))
    if not zones:
        raise StoreError(f"{path} is not an area run's store (it has no zones): describe a single store with "
                         f"xterramind.catalog.item({str(path)!r})")
    items = [item(path, zone=zone, href=href) for zone in zones]
    name = id or path.name.removesuffix(".zarr")
    first = items[0].properties
    text = description or (f"{first.get('xterramind:product', 'xterramind results')} of {first.get('xterramind:model')}"
                           f" over {len(zones)} zone(s), written by xterramind")
    result = pystac.Collection(name, text, _extent(pystac, items), license=license,
                               stac_extensions=[PROJECTION, XARRAY], extra_fields={PRODUCT_FLAG: first[PRODUCT_FLAG]})
    result.add_items(items)
    return result


def _extent(pystac, items) -> object:
    boxes = np.array([stac_item.bbox for stac_item in items])
    spatial = pystac.SpatialExtent([[float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()),
                                     float(boxes[:, 3].max())]])
    starts = [i.common_metadata.start_datetime or i.datetime for i in items]
    ends = [i.common_metadata.end_datetime or i.datetime for i in items]
    return pystac.Extent(spatial, pystac.TemporalExtent([[min(starts), max(ends)]]))


def write(store: str | os.PathLike, folder: str | os.PathLike | None = None, **options) -> Path:
    """Save a self-contained static STAC catalogue of a store: a Catalog with its Item, or for an area run a
    Collection with one Item per zone; the zarr asset's href is relative, so the folder and the store move
    together.

    Args:
        store: a store written by ``to_zarr`` or ``xterramind run``.
        folder: where (default: ``<store>.stac`` next to the store).
        **options (Any): passed to ``item`` or ``collection`` (``id``, ``datetime``, ``license``, ...).

    Returns:
        The path of the root ``catalog.json`` or ``collection.json``.

    Example:
        >>> root = xterramind.catalog.write("lulc.zarr")          # lulc.stac/catalog.json
        >>> xterramind.stac.load(root)
    """
    pystac = _pystac()
    path = Path(store).expanduser().resolve()
    folder = Path(folder).expanduser().resolve() if folder is not None else path.with_name(f"{path.name}.stac")
    if folder.exists() and any(folder.iterdir()) and not (folder / "catalog.json").exists() and \
            not (folder / "collection.json").exists():
        raise StoreError(f"{folder} holds other files: pick an empty folder for the catalogue")
    if RUN_ATTR in (group_attrs(path) or {}):
        root = collection(path, **options)
    else:
        root = pystac.Catalog(f"{path.name.removesuffix('.zarr')}-catalog", f"STAC catalogue of {path.name}")
        root.add_item(item(path, **options))
    root.normalize_hrefs(str(folder / f"{root.STAC_OBJECT_TYPE.value.lower()}.json"))  # a folder named *.stac is one
    for stac_item in root.get_items(recursive=True):  # relative to where the Item's JSON file will lie
        asset = stac_item.assets[ZARR_ASSET]
        asset.href = os.path.relpath(path, Path(stac_item.get_self_href()).parent)
    root.save(pystac.CatalogType.SELF_CONTAINED)
    return Path(root.get_self_href())


# -- COG files ---------------------------------------------------------------------------------------------


def cog_item(paths: str | os.PathLike | Sequence[str | os.PathLike], *, id: str | None = None,
             datetime: dt.datetime | None = None):
    """The STAC Item of one or more GeoTIFFs on one grid (the COG twins of a result): one asset per file, with
    its bands, projection and the result's provenance from the files' tags.

    Args:
        paths: a GeoTIFF path or several, all in one CRS.
        id: the Item's id (default: the first file's name).
        datetime: the Item's datetime (default: the files' ``date`` tag, else the first file's modification time).

    Raises:
        InputError: no files, a file that is not a georeferenced raster, or files in different CRSs.

    Example:
        >>> stac_item = xterramind.catalog.cog_item(["lulc.tif", "lulc_probability.tif"])
        >>> odc.stac.load([stac_item], bands=["lulc"])
    """
    import rasterio

    pystac = _pystac()
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not files:
        raise InputError("cog_item needs at least one GeoTIFF path")
    described = [_describe_tiff(rasterio, file) for file in files]
    crs = described[0][0].crs
    if any(not same_crs(grid.crs, crs) for grid, _, _ in described):
        raise InputError(f"the files {[str(f) for f in files]} are in different CRSs: make one Item per CRS")
    geometry, bbox = footprint(described[0][0])
    for grid, _, _ in described[1:]:
        geometry, bbox = _union(geometry, footprint(grid)[0])
    tags = described[0][2]
    dated = _moment(tags["date"]) if "date" in tags else None  # a time series' file: its date
    moment = datetime or dated or dt.datetime.fromtimestamp(files[0].stat().st_mtime, tz=dt.UTC)
    properties = {PRODUCT_FLAG: tags.get("xterramind_version", "unknown"), **_provenance(tags),
                  "datetime": _iso(moment), **{k: v for k, v in _projection(described[0][0]).items()
                                               if k in ("proj:code", "proj:wkt2")}}
    stac_item = pystac.Item(id or files[0].stem, geometry, bbox, moment, properties, stac_extensions=[PROJECTION])
    for file, (grid, bands, _) in zip(files, described, strict=True):
        fields = {k: v for k, v in _projection(grid).items() if k in ("proj:shape", "proj:transform", "proj:bbox")}
        stac_item.add_asset(file.stem, pystac.Asset(str(file.resolve()), media_type=COG_MEDIA_TYPE, roles=["data"],
                                                    extra_fields={**fields, "bands": bands}))
    return stac_item


def write_cog_item(paths: str | os.PathLike | Sequence[str | os.PathLike], **options) -> Path:
    """Save the STAC Item of COG files (``cog_item``) next to the first, as ``<its name>.json`` with relative hrefs,
    so that the files and their Item move together.

    Example:
        >>> xterramind.catalog.write_cog_item("lulc.tif")          # lulc.json
        PosixPath('lulc.json')
    """
    stac_item = cog_item(paths, **options)
    first = Path(paths if isinstance(paths, (str, os.PathLike)) else paths[0]).expanduser().resolve()
    target = first.with_suffix(".json")
    stac_item.set_self_href(str(target))
    stac_item.make_asset_hrefs_relative()
    stac_item.save_object(include_self_link=False)
    return target


def _describe_tiff(rasterio, file: Path):
    """A GeoTIFF's grid, STAC bands and tags (values parsed where they are JSON, as the COG writer stores lists)."""
    try:
        with rasterio.open(file) as source:
            if source.crs is None:
                raise InputError(f"{file} has no CRS: a STAC Item needs georeferenced files")
            grid = PixelGrid(source.crs.to_wkt(), source.transform, source.height, source.width)
            nodata = {"nodata": _nodata(float(source.nodata) if np.dtype(source.dtypes[0]).kind == "f"
                                        else int(source.nodata))} if source.nodata is not None else {}
            bands = [{"name": source.descriptions[i] or f"{file.stem}_{i + 1}", "data_type": _data_type(np.dtype(d)),
                      **nodata, **({"unit": source.units[i]} if source.units[i] else {})}
                     for i, d in enumerate(source.dtypes)]
            tags = source.tags()
    except rasterio.errors.RasterioIOError as error:
        raise InputError(f"cannot read {file} as a GeoTIFF: {error}") from None

    def parsed(text: str):
        try:
            return json.loads(text)
        except ValueError:
            return text

    return grid, bands, {k: parsed(v) for k, v in tags.items()}


def _union(geometry: dict, other: dict) -> tuple[dict, list[float]]:
    import shapely
    from shapely.geometry import mapping, shape

    union = shapely.union_all([shape(geometry), shape(other)])
    return mapping(union), list(union.bounds)


# -- loading back ------------------------------------------------------------------------------------------


def is_product(stac_object) -> bool:
    """Whether a pystac Item or Collection describes an xterramind output (it has ``xterramind:version``).

    Example:
        >>> is_product(xterramind.catalog.item("lulc.zarr"))
        True
    """
    fields = getattr(stac_object, "properties", None) or getattr(stac_object, "extra_fields", {})
    return PRODUCT_FLAG in fields


def load(items, *, zone: str | None = None):
    """The stored result that xterramind product Items (or a Collection of an area run) describe, opened with
    ``xterramind.open`` on its own grid: lazy, with its CRS, transform and attributes.

    Args:
        items (pystac.Item | pystac.Collection | list): a product Item, a list of them, or a run's Collection.
        zone: which zone of an area run (needed when the Items are of several zones).

    Raises:
        InputError: Items that are not xterramind products, of several zones without ``zone=``, or of several
            stores.

    Example:
        >>> lulc = xterramind.catalog.load(pystac.Item.from_file("lulc.stac/lulc/lulc.json"))
    """
    pystac = _pystac()
    if isinstance(items, pystac.Catalog):
        items = list(items.get_items(recursive=True))
    items = [items] if isinstance(items, pystac.Item) else list(items)
    foreign = [getattr(i, "id", repr(i)) for i in items if not isinstance(i, pystac.Item) or not is_product(i)]
    if foreign or not items:
        raise InputError(f"the items {foreign[:5] or '[]'} are not xterramind products (no {PRODUCT_FLAG} property): "
                         "load satellite items with xterramind.stac.load(items, modalities), or describe a store "
                         "with xterramind.catalog.item(path)")
    by_zone = {_zone_of(i): i for i in items}
    if zone is None and len(by_zone) > 1:
        raise InputError(f"the items are of zones {sorted(map(str, by_zone))}: pick one with zone=, e.g. "
                         f"zone={sorted(map(str, by_zone))[0]!r}")
    chosen = by_zone.get(zone) if zone is not None else next(iter(by_zone.values()))
    if chosen is None:
        raise InputError(f"no item of zone {zone!r}: the items are of zones {sorted(map(str, by_zone))}")
    asset = chosen.assets.get(ZARR_ASSET)
    if asset is None:
        raise InputError(f"item {chosen.id} has no {ZARR_ASSET!r} asset: only zarr products load back; open COGs "
                         "with odc.stac.load or rioxarray")
    return open_result(asset.get_absolute_href() or asset.href, zone=_zone_of(chosen))


def _zone_of(stac_item) -> str | None:
    asset = stac_item.assets.get(ZARR_ASSET)
    return (asset.extra_fields.get("xarray:open_kwargs", {}) if asset else {}).get("group")
