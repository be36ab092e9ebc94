"""GeoZarr convention attributes: the CRS (``proj:``) and the pixel grid (``spatial:``) of a store, declared in
``zarr_conventions``, beside the CF ``spatial_ref`` and GDAL ``_CRS`` attributes every store already has.

The GeoZarr specification builds on conventions of the zarr-conventions organization; this module writes their
first tagged releases, ``v0.1``:

- ``proj`` (github.com/zarr-conventions/proj, formerly geo-proj): ``proj:code`` where the CRS is exactly an EPSG
  code, else ``proj:wkt2``. One of them, never both: the schema before v0.1 takes exactly one (``oneOf``), v0.1
  at least one, so a single member is valid under both and readers never meet two that could disagree.
- ``spatial`` (github.com/zarr-conventions/spatial): ``spatial:dimensions`` (Y name first, then X),
  ``spatial:transform`` (rasterio/affine order ``[a, b, c, d, e, f]``, of pixel *corners*: index ``(0, 0)`` is the
  top-left corner of the top-left pixel), ``spatial:shape`` ``[height, width]``, ``spatial:bbox``
  ``[xmin, ymin, xmax, ymax]`` (the outer pixel edges) and ``spatial:registration`` ``"pixel"``.
- ``multiscales`` (github.com/zarr-conventions/multiscales): only its declaration, for whoever writes overviews.

Everything here is pure: dicts in, dicts out, no store is touched (``xterramind.store`` writes them). ``read``
reads the georeferencing back from any revision's attributes, declared by the conventions' permanent UUIDs, so
documents written by rioxarray, GDAL or the specs' own examples read the same way.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

from affine import Affine

from .errors import InputError, MissingCRSError, OptionError

__all__ = ["DECLARATIONS", "attributes", "conventions", "is_convention_key", "read"]

_TAG = "v0.1"  # the release of each convention that is declared (the UUIDs never change across releases)


def _declaration(repository: str, uuid: str, name: str, description: str) -> dict[str, str]:
    return {
        "schema_url": f"https://raw.githubusercontent.com/zarr-conventions/{repository}/refs/tags/{_TAG}/schema.json",
        "spec_url": f"https://github.com/zarr-conventions/{repository}/blob/{_TAG}/README.md",
        "uuid": uuid,
        "name": name,
        "description": description,
    }


DECLARATIONS: dict[str, dict[str, str]] = {  # the convention metadata objects, by short name
    "proj": _declaration("proj", "f17cb550-5864-4468-aeb7-f3180cfb622f", "proj",
                         "Coordinate reference system information for geospatial data"),
    "spatial": _declaration("spatial", "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4", "spatial",
                            "Spatial coordinate information"),
    "multiscales": _declaration("multiscales", "d35379db-88df-4056-af3a-620245f8e347", "multiscales",
                                "Multiscale layout of zarr datasets"),
}
"""The ``zarr_conventions`` declaration objects, by short name (``conventions`` gives copies)."""
_PROJ_KEYS = ("proj:wkt2", "proj:projjson", "proj:code")  # read in this order: the full definitions first


def is_convention_key(key: str) -> bool:
    """Whether an attribute belongs to these conventions (``proj:*``, ``spatial:*``, ``multiscales``): describing one
    grid, it is stale on a result cut or coarsened from it. (``zarr_conventions`` may declare others' too.)

    Example:
        >>> is_convention_key("spatial:transform"), is_convention_key("model")
        (True, False)
    """
    return key.startswith(("proj:", "spatial:")) or key == "multiscales"


def conventions(*names: str) -> list[dict[str, str]]:
    """The ``zarr_conventions`` declarations of the conventions named, in that order (fresh copies).

    Args:
        *names: short names: ``"proj"``, ``"spatial"``, ``"multiscales"``.

    Raises:
        OptionError: a name that is not one of these.

    Example:
        >>> [c["name"] for c in conventions("multiscales", "proj", "spatial")]
        ['multiscales', 'proj', 'spatial']
        >>> conventions("spatial")[0]["uuid"]
        '689b58e2-cf7b-45e0-9fff-9cfc0883d6b4'
    """
    unknown = [name for name in names if name not in DECLARATIONS]
    if unknown:
        raise OptionError(f"unknown GeoZarr conventions {unknown}; use some of {sorted(DECLARATIONS)}")
    return [copy.deepcopy(DECLARATIONS[name]) for name in names]


def attributes(crs, transform: Affine | Sequence[float], shape: Sequence[int],
               dims: Sequence[str] = ("y", "x")) -> dict:
    """The ``proj:`` and ``spatial:`` attributes of a north-up pixel grid, with the ``zarr_conventions`` that
    declare them: what a store's root group and each of its georeferenced arrays get.

    Args:
        crs: the CRS, anything pyproj reads (a rasterio or pyproj ``CRS``, WKT, ``"EPSG:32633"``), e.g.
            ``dataset.rio.crs`` or ``PixelGrid.crs``.
        transform: the affine transform of the pixel corners (rasterio's), e.g. ``dataset.rio.transform()``.
        shape: ``(height, width)`` in pixels: the sizes of the y and x dimensions.
        dims: the names of the Y and X dimensions, in that order (whatever their order in the array).

    Raises:
        MissingCRSError: no CRS.
        InputError: a CRS pyproj cannot read, a transform of other than 6 finite numbers or a singular one, a shape
            of other than two positive integers, or dims that are not two different names.

    Example:
        >>> attrs = attributes("EPSG:32633", Affine(10, 0, 500_000, 0, -10, 5_000_000), (100, 200))
        >>> attrs["proj:code"], attrs["spatial:bbox"]
        ('EPSG:32633', [500000.0, 4999000.0, 502000.0, 5000000.0])
    """
    return {"zarr_conventions": conventions("proj", "spatial"), **_proj(crs),
            **_spatial(_affine(transform), _shape(shape), _dims(dims))}


def read(attrs: Mapping) -> tuple:
    """The georeferencing in GeoZarr attributes: ``(crs, transform, shape)``.

    ``crs`` is a ``rasterio.crs.CRS``, ``transform`` the ``Affine`` of the pixel corners (a node-registered grid's
    is moved half a pixel, so both registrations give rasterio's), ``shape`` ``(height, width)`` from
    ``spatial:shape``, else from ``spatial:bbox`` on an unrotated grid, else None (both are optional).

    Args:
        attrs: a group's or array's attributes (``zarr.open_group(...).attrs``), or a node's metadata document
            holding them under ``"attributes"``.

    Raises:
        InputError: the attributes do not declare the ``proj`` and ``spatial`` conventions (by their UUIDs), lack
            a CRS or an affine ``spatial:transform``, or hold one that cannot be read.

    Example:
        >>> crs, transform, shape = read(attributes("EPSG:32633", Affine(10, 0, 5e5, 0, -10, 5e6), (100, 200)))
        >>> crs.to_epsg(), transform.c, shape
        (32633, 500000.0, (100, 200))
    """
    if not isinstance(attrs, Mapping):
        raise InputError(f"GeoZarr attributes are a mapping (a zarr node's .attrs), got {type(attrs).__name__}")
    attrs = attrs.get("attributes", attrs) if "zarr_conventions" not in attrs else attrs
    for name in ("proj", "spatial"):
        _check_declared(attrs, name)
    transform = _read_transform(attrs)
    return _read_crs(attrs), transform, _read_shape(attrs, transform)


# -- writing -------------------------------------------------------------------------------------------------


def _proj(crs) -> dict:
    """``proj:code`` where the CRS is exactly its EPSG code's, else ``proj:wkt2`` (one member: see the docstring)."""
    crs = _pyproj_crs(crs)
    code = crs.to_epsg(min_confidence=100)
    if code is not None and _pyproj_crs(f"EPSG:{code}") == crs:
        return {"proj:code": f"EPSG:{code}"}
    return {"proj:wkt2": crs.to_wkt("WKT2_2019")}


def _spatial(transform: Affine, shape: tuple[int, int], dims: tuple[str, str]) -> dict:
    height, width = shape
    xs, ys = zip(*(transform * corner for corner in ((0, 0), (width, 0), (0, height), (width, height))), strict=True)
    return {
        "spatial:dimensions": list(dims),
        "spatial:transform": [float(v) for v in tuple(transform)[:6]],
        "spatial:shape": [height, width],
        "spatial:bbox": [float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))],
        "spatial:registration": "pixel",
    }


def _pyproj_crs(crs):
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if crs is None:
        raise MissingCRSError("GeoZarr attributes need a CRS; give the result's (dataset.rio.crs)")
    try:
        return CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    except CRSError as error:
        raise InputError(f"pyproj cannot read the CRS {str(crs)[:80]!r}: {error}; give WKT or 'EPSG:<code>'") from None


def _affine(transform) -> Affine:
    values = tuple(transform)[:6]
    if len(values) != 6 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise InputError(f"a transform is 6 finite numbers [a, b, c, d, e, f] (rasterio's Affine), got {transform!r}")
    affine = Affine(*values)
    if affine.determinant == 0:
        raise InputError(f"the transform {values} is singular (a zero pixel size): give the grid's real one")
    return affine


def _shape(shape) -> tuple[int, int]:
    values = tuple(shape)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise InputError(f"shape is (height, width), two positive integers, got {shape!r}")
    return values


def _dims(dims) -> tuple[str, str]:
    values = tuple(dims)
    if len(values) != 2 or not all(isinstance(v, str) and v for v in values) or values[0] == values[1]:
        raise InputError(f"dims are the names of the Y and X dimensions, in that order, e.g. ('y', 'x'); got {dims!r}")
    return values


# -- reading -------------------------------------------------------------------------------------------------


def _check_declared(attrs: Mapping, name: str) -> None:
    """Readers take convention attributes only where the convention is declared; any revision, by its UUID."""
    uuid = DECLARATIONS[name]["uuid"]
    declared = attrs.get("zarr_conventions")
    if not isinstance(declared, list) or not any(isinstance(c, Mapping) and c.get("uuid") == uuid for c in declared):
        raise InputError(f"the attributes declare no {name} convention (uuid {uuid}) in zarr_conventions, so their "
                         f"{name}: members do not count; write them with xterramind.geozarr.attributes")


def _read_crs(attrs: Mapping):
    from rasterio.crs import CRS

    for key in _PROJ_KEYS:
        if attrs.get(key) is not None:
            return CRS.from_wkt(_pyproj_crs(attrs[key]).to_wkt())
    raise InputError(f"the attributes hold no CRS: one of {list(_PROJ_KEYS)} is needed (proj convention)")


def _read_transform(attrs: Mapping) -> Affine:
    kind = attrs.get("spatial:transform_type", "affine")
    if kind != "affine":
        raise InputError(f"spatial:transform_type {kind!r} is not read; only 'affine' grids are")
    if attrs.get("spatial:transform") is None:
        raise InputError("the attributes hold no spatial:transform; an affine grid needs one (spatial convention)")
    transform = _affine(attrs["spatial:transform"])
    registration = attrs.get("spatial:registration", "pixel")
    if registration not in ("pixel", "node"):
        raise InputError(f"spatial:registration is 'pixel' or 'node', got {registration!r}")
    # a node-registered transform maps indices to cell centres; rasterio's maps them to cell corners
    return transform * Affine.translation(-0.5, -0.5) if registration == "node" else transform


def _read_shape(attrs: Mapping, transform: Affine) -> tuple[int, int] | None:
    if attrs.get("spatial:shape") is not None:
        return _shape(attrs["spatial:shape"])
    bbox = attrs.get("spatial:bbox")
    if bbox is None or transform.b or transform.d:
        return None
    xmin, ymin, xmax, ymax = bbox
    width, height = (xmax - xmin) / abs(transform.a), (ymax - ymin) / abs(transform.e)
    if attrs.get("spatial:registration") == "node":  # the bbox spans the outer cells' centres
        width, height = width + 1, height + 1
    return round(height), round(width)
