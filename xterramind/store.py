"""Georeferenced zarr stores written region by region, resumable, never silently overwritten.

Layout (read by xarray + rioxarray, and by GDAL: zarr v2 from GDAL 3.6, v3 from 3.11; v2 by default,
since the GDAL inside rasterio's wheels is 3.10): 1-D ``x``/``y`` coordinate arrays, CF
``spatial_ref``/``grid_mapping`` and GDAL's ``_CRS`` on every data variable, the codecs of ``compressors``
(measured: blosc lz4 for floats, zstd for integers), the result's attributes on the root group too.
``open_result`` (``xterramind.open``) reads a store back as the georeferenced result that was written.
A write (``xterramind.pipeline.write``):

1. the template (metadata and coordinates only) is written first (``prepare``);
2. each region's blocks are computed and written with zarr, chunk-aligned by construction (``Template.write``);
3. only then does it mark the region complete in the ledger ``xterramind/done``, a zarr array with
   one chunk per region, so every task writes only its own chunk (no shared read-modify-write).

A rerun of the same call skips complete regions, so a crash loses at most the regions in flight.
The ledger group also keeps a fingerprint of what the store holds; a different result is refused,
not mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor this module uses)
import xarray as xr
import zarr

from . import geozarr
from .errors import ForeignStoreError, InputError, MissingCRSError, OptionError, StoreError, StoreExistsError

LEDGER = "xterramind"  # the group holding the fingerprint and the ``done`` ledger
RUN_ATTR = "xterramind_run"  # on the root group of an area run's store: its zones (one store each)
RESULT_VARIABLE = "xterramind_variable"  # on a store written from a DataArray: which variable it was
DEFAULT_ZARR_FORMAT = 2  # GDAL 3.6-3.10 (rasterio's wheels, QGIS) read only v2; v3 needs GDAL >= 3.11
DONE_VALID, DONE_EMPTY = 1, 2  # ledger values: complete with data / complete without valid input
PACKING = ("dtype", "scale_factor", "add_offset", "_FillValue", "missing_value")  # CF encodings of stored values
KEPT_ENCODING = ("grid_mapping", "units", "calendar", *PACKING)  # a variable's encodings that reach the store


@dataclass
class WriteReport:
    """What a write did."""

    store: str
    regions: int  # in the result
    written: int  # computed and written by this call
    skipped: int  # already complete from an earlier call
    empty: int  # written regions that had no valid input (all NaN / fill)
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.store}: {self.written} of {self.regions} regions written, {self.skipped} already complete"
            f"{f', {self.empty} without valid input' if self.empty else ''} ({self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class Template:
    """A store's template, ready for region writes: where it is and how its variables split into regions."""

    path: str
    layout: BlockLayout
    packing: dict[str, dict] = field(default_factory=dict)  # CF packing of the variables that have one (``_packing``)

    def ledger(self) -> np.ndarray:
        """Per region (block index): 0 to do, ``DONE_VALID`` or ``DONE_EMPTY``."""
        return zarr.open_array(self.path, path=f"{LEDGER}/done", mode="r")[...]

    def write(self, arrays, index) -> bool:
        """Write one region's blocks (in the order of ``layout.variables``), then mark it done."""
        return _write_block(*arrays, target=self, index=index)


def prepare(result: xr.DataArray | xr.Dataset, store: str | os.PathLike, *, resume: bool = True, overwrite: bool = False,
            zarr_format: int = DEFAULT_ZARR_FORMAT) -> Template:
    """Write the template of ``result`` (metadata, coordinates and an empty ledger), or check that an
    existing store holds this very result and reuse it. Nothing of the result is computed."""
    if zarr_format not in (2, 3):
        raise OptionError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    dataset = as_dataset(result)
    layout = BlockLayout.of(dataset)
    path = Path(store).expanduser()
    fingerprint = _fingerprint(dataset, zarr_format)
    sources = [dataset.encoding.get("source"), *(var.encoding.get("source") for var in dataset.data_vars.values())]
    if overwrite and path.exists() and path.resolve() in {Path(s).resolve() for s in sources if s}:
        raise StoreError(f"the result reads from {path}: overwrite=True would delete its own input; write to another "
                         "path")
    if not check_existing(path, "fingerprint", fingerprint, group=LEDGER, kind="store", resume=resume,
                          overwrite=overwrite, different=_different_result):
        if path.exists():  # only with overwrite
            remove(path, written_by_xterramind=is_store)
        _write_template(dataset, path, zarr_format, fingerprint, layout)
    return Template(str(path), layout, {name: packing for name, var in dataset.data_vars.items()
                                        if (packing := _packing(var))})


def as_dataset(result) -> xr.Dataset:
    if isinstance(result, xr.DataArray):
        if result.name is None:
            raise InputError("the DataArray needs a name to become a zarr variable: result.rename('name')")
        # the result's provenance on the root group too, and which variable to give back (``open_result``)
        attrs = {k: v for k, v in result.attrs.items() if k != "grid_mapping"} | {RESULT_VARIABLE: result.name}
        result = result.to_dataset()
        result.attrs = attrs
    if not isinstance(result, xr.Dataset):
        raise InputError(f"expected an xarray result, got {type(result).__name__}")
    result = result.copy(deep=False)  # the grid's conventions are written afresh: those read with it may be stale
    for node in (result, *result.data_vars.values()):
        node.attrs = {k: v for k, v in node.attrs.items() if not geozarr.is_convention_key(k)}
    lazy = [name for name, var in result.data_vars.items() if var.chunks is None]
    if lazy:
        raise InputError(f"variables {lazy} are not dask-backed; to_zarr writes lazy xterramind results region by region")
    if result.rio.crs is None:
        raise MissingCRSError("the result has no CRS; xterramind results carry one (was it dropped?)")
    return result


@dataclass(frozen=True)
class BlockLayout:
    """How the dataset splits into write blocks: its dask chunks along (time,) y, x."""

    variables: tuple[str, ...]
    dims: tuple[str, ...]  # the blocked dims, in order: ("time",) "y", "x"
    chunks: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, dataset: xr.Dataset) -> BlockLayout:
        dims = tuple(d for d in ("time", "y", "x") if d in dataset.dims)
        chunks = tuple(dataset.chunks[d] for d in dims)
        for dim, sizes in zip(dims, chunks, strict=True):
            if len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]:
                raise InputError(f"the chunks along {dim} are irregular {sizes}; zarr needs equal chunks (the last may be smaller)")
        for name, var in dataset.data_vars.items():
            for dim, sizes in zip(var.dims, var.chunks, strict=True):
                if dim not in dims and len(sizes) > 1:
                    raise InputError(f"{name} is chunked along {dim}; a region must hold it whole: .chunk({{'{dim}': -1}})")
        return cls(tuple(dataset.data_vars), dims, chunks)

    def block_indices(self) -> list[tuple[int, ...]]:
        return [tuple(index) for index in np.ndindex(*(len(c) for c in self.chunks))]

    def slices(self, index) -> dict[str, slice]:
        out = {}
        for dim, sizes, i in zip(self.dims, self.chunks, index, strict=True):
            start = sum(sizes[:i])
            out[dim] = slice(start, start + sizes[i])
        return out

    def block(self, dataset: xr.Dataset, index) -> list:
        """The dask arrays of one block of every variable."""
        parts = []
        for name in self.variables:
            var = dataset[name]
            position = dict(zip(self.dims, index, strict=True))
            parts.append(var.data.blocks[tuple(position.get(d, 0) for d in var.dims)])
        return parts


def _write_block(*arrays: np.ndarray, target: Template, index) -> bool:
    """Write one region of every variable, then its completion marker. True when it held valid data."""
    group = zarr.open_group(target.path, mode="r+")
    slices = target.layout.slices(index)
    valid = False
    for name, block in zip(target.layout.variables, arrays, strict=True):
        array = group[name]
        if hasattr(array, "with_config"):  # zarr >= 3.1.6: skip the check for all-fill chunks, slower than lz4 itself
            array = array.with_config({"write_empty_chunks": True})
        valid = valid or _has_data(block, array.fill_value)
        if name in target.packing:
            block = packed(block, target.packing[name])
        array[_region(array, slices)] = block
    ledger = zarr.open_array(target.path, path=f"{LEDGER}/done", mode="r+")
    ledger[index] = DONE_VALID if valid else DONE_EMPTY  # only after the data is written
    return valid


def packed(values: np.ndarray, packing: dict) -> np.ndarray:
    """Values as a variable with CF ``packing`` (``_packing``) stores them, as xarray's ``to_zarr`` would: scaled,
    offset, filled, rounded, cast.

    Example:
        >>> packed(np.array([0.5, np.nan]), {"dtype": "uint8", "scale_factor": 1 / 254, "_FillValue": 255})
        array([127, 255], dtype=uint8)
    """
    return xr.conventions.encode_cf_variable(
        xr.Variable([f"dim_{i}" for i in range(values.ndim)], values, encoding=dict(packing))).values


def mark_empty(target: Template, index) -> None:
    """Mark a region complete without computing it: it had no valid input (see ``write_nodata``)."""
    write_nodata(target, [index])
    zarr.open_array(target.path, path=f"{LEDGER}/done", mode="r+")[index] = DONE_EMPTY


def write_nodata(target: Template, indices) -> None:
    """Give regions that are not computed their nodata: they stay at the fill value, but for integer variables
    whose declared ``nodata`` is another value (tokens: -1, where 0 is a real token; a fine-tuned model's classes:
    255, where 0 is a class), which get their nodata written. The ledger is left as it is."""
    group = zarr.open_group(target.path, mode="r+")
    unfilled = [(array, nodata) for array in (group[name] for name in target.layout.variables)
                if isinstance(nodata := array.attrs.get("nodata"), int) and nodata != array.fill_value]
    for index in indices if unfilled else ():
        slices = target.layout.slices(index)
        for array, nodata in unfilled:
            array[_region(array, slices)] = nodata


def _region(array, slices: dict[str, slice]) -> tuple[slice, ...]:
    """The index of a region in one zarr array, whatever its dimensions' order."""
    dims = array.attrs.get("_ARRAY_DIMENSIONS") or array.metadata.dimension_names  # zarr v2, v3
    return tuple(slices.get(d, slice(None)) for d in dims)


def _packing(var: xr.Variable | xr.DataArray) -> dict:
    """A variable's CF packing where its stored values differ from its values (scale, offset or another dtype)."""
    packing = {k: v for k, v in var.encoding.items() if k in PACKING}
    packed = {"scale_factor", "add_offset"} & set(packing) or np.dtype(packing.get("dtype", var.dtype)) != var.dtype
    return packing if packed else {}


def _has_data(block: np.ndarray, fill, rows: int = 64) -> bool:
    """Whether the block holds a value that is not fill (NaN for floats): looked for ``rows`` rows at a time, so a
    block with data answers from its first rows (no block-sized mask: a region's probabilities are 150 MB)."""
    flat = block.reshape(-1, block.shape[-1]) if block.ndim > 1 else block.reshape(1, -1)
    floating = np.issubdtype(block.dtype, np.floating)
    for start in range(0, len(flat), rows):
        part = flat[start : start + rows]
        if (np.isfinite(part) if floating else part != fill).any():
            return True
    return False


def _fingerprint(dataset: xr.Dataset, zarr_format: int) -> dict:
    """What the store holds: variables (dims, shape, dtype, chunks, attrs), coordinates and CRS."""

    def digest(values) -> str:
        return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:16]

    return {
        "zarr_format": zarr_format,
        "crs": dataset.rio.crs.to_wkt(),
        "coords": {name: digest(dataset[name].values) for name in dataset.dims if name in dataset.coords},
        "variables": {
            name: {
                "dims": list(var.dims),
                "shape": list(var.shape),
                "dtype": str(var.dtype),
                "chunks": [list(c) for c in var.chunks],
                "attrs": json.loads(json.dumps(var.attrs, default=str)),
                **({"packing": json.loads(json.dumps(packing, default=str))} if (packing := _packing(var)) else {}),
            }
            for name, var in dataset.data_vars.items()
        },
    }


def check_existing(path: Path, key: str, wanted, *, group: str | None = None, kind: str, resume: bool,
                   overwrite: bool, different: Callable[[object, object], str]) -> bool:
    """Whether ``path`` holds this very thing to complete: its group's attribute ``key`` is ``wanted`` (True).
    False when there is nothing there, or ``overwrite`` is asked (the caller removes it). Anything else is
    refused: a path xterramind did not write this ``kind`` to, a ``resume=False``, or another result
    (``different(found, wanted)`` says how it differs). Nothing is written."""
    if overwrite or not path.exists():
        return False
    found = (group_attrs(path, group) or {}).get(key)
    if found is None:
        raise ForeignStoreError(f"{path} exists and is not an xterramind {kind}; pick another path, or pass "
                                "overwrite=True to replace it")
    if not resume:
        raise StoreExistsError(f"{path} exists; pass resume=True to complete it, or overwrite=True to replace it")
    if found != wanted:
        raise ForeignStoreError(f"{path} holds {different(found, wanted)}; write to another path, or pass "
                                "overwrite=True to replace it")
    return True


def _different_result(found: dict, wanted: dict) -> str:
    return f"a different result (differs in {', '.join(sorted(_differences(found, wanted))[:6])})"


def open_run_root(path: Path, zones: dict[str, str], *, resume: bool, overwrite: bool, zarr_format: int) -> Path:
    """The root group of an area run's store, whose zones (name -> CRS) each hold a store: created, or an
    earlier run's reopened (its zones must be these)."""
    if check_run_root(path, zones, resume=resume, overwrite=overwrite):
        return path
    if path.exists():  # only with overwrite
        remove(path, written_by_xterramind=lambda path: RUN_ATTR in (group_attrs(path) or {}))
    zarr.open_group(str(path), mode="w-", zarr_format=zarr_format).attrs[RUN_ATTR] = {"zones": zones}
    return path


def check_run_root(path: Path, zones: dict[str, str], *, resume: bool, overwrite: bool) -> bool:
    """Whether ``path`` holds an earlier run with these zones to complete (see ``check_existing``)."""
    return check_existing(path, RUN_ATTR, {"zones": zones}, kind="run store", resume=resume, overwrite=overwrite,
                          different=lambda found, wanted: f"zones {sorted(found['zones'])}, this plan has "
                                                          f"{sorted(wanted['zones'])}")


def group_attrs(path, group: str | None = None) -> dict | None:
    """The attributes of the zarr group at ``path`` (its subgroup ``group``), or None where there is none."""
    node = _group_or_none(path, group)
    return None if node is None else dict(node.attrs)


def is_store(path: Path) -> bool:
    """Whether ``path`` is a store that xterramind wrote (it has the ledger group with a fingerprint)."""
    return "fingerprint" in (group_attrs(path, LEDGER) or {})


def remove(path: Path, *, written_by_xterramind: Callable[[Path], bool]) -> None:
    """Delete ``path`` for ``overwrite=True``, but only what xterramind wrote there (or an empty folder):
    never a folder of other files, a file, or a folder that holds the working directory or the home."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    if resolved in (Path.cwd().resolve(), *Path.cwd().resolve().parents, Path.home().resolve()):
        raise StoreError(f"{path} holds the current folder or the home folder: overwrite=True will not delete it; "
                         "write to a path of its own, e.g. 'result.zarr'")
    if not path.is_dir():
        raise ForeignStoreError(f"{path} is a file, not a store: overwrite=True replaces only what xterramind wrote; "
                         "remove the file yourself or pick another path")
    if any(path.iterdir()) and not written_by_xterramind(path):
        raise ForeignStoreError(f"{path} holds files xterramind did not write: overwrite=True replaces only what xterramind "
                         "wrote; remove the folder yourself or pick another path")
    shutil.rmtree(path)


def _differences(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) | set(b)
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _write_template(dataset: xr.Dataset, path: Path, zarr_format: int, fingerprint: dict, layout: BlockLayout) -> None:
    template = dataset.copy(deep=False)
    wkt = dataset.rio.crs.to_wkt()
    for name, var in template.variables.items():
        kept = {k: v for k, v in var.encoding.items() if k in KEPT_ENCODING}
        stored = np.dtype(kept.get("dtype", var.dtype))  # what the store holds, after any CF packing
        encoding = {"compressors": compressors(stored, zarr_format)}
        if name in template.data_vars:
            var.attrs = {**var.attrs, "_CRS": {"wkt": wkt}}  # for GDAL; CF grid_mapping stays in the encoding
            encoding["chunks"] = tuple(c[0] for c in var.chunks)
            if stored.kind == "f" and "_FillValue" not in kept and "_FillValue" not in var.attrs:
                encoding["_FillValue"] = np.nan
        var.encoding = kept | encoding
    template.to_zarr(str(path), mode="w-", compute=False, zarr_format=zarr_format, consolidated=False)
    group = zarr.open_group(str(path), path=LEDGER, mode="w", zarr_format=zarr_format)
    group.attrs["fingerprint"] = fingerprint
    blocks = tuple(len(c) for c in layout.chunks)
    group.create_array("done", shape=blocks, chunks=(1,) * len(blocks), dtype="uint8", fill_value=0,
                       compressors=[_zstd(zarr_format)])
    write_geozarr(path, dataset)  # metadata beside CF and _CRS, outside the fingerprint: older stores still resume
    consolidate(path)


def write_geozarr(path, dataset: xr.Dataset) -> None:
    """Add the GeoZarr convention attributes (``xterramind.geozarr``: ``proj:``, ``spatial:``, ``zarr_conventions``)
    of ``dataset``'s grid to the store at ``path``: its root group and each data variable whose last two dimensions
    are ``y``, ``x``. Conventions declared there already (another's) are kept. Metadata only: it changes nothing
    xarray, rioxarray or GDAL read, and is written before ``consolidate``.

    Example:
        >>> write_geozarr("lulc.zarr", lulc)
        >>> zarr.open_group("lulc.zarr")["LULC"].attrs["spatial:dimensions"]
        ['y', 'x']
    """
    attrs = geozarr.attributes(dataset.rio.crs, dataset.rio.transform(), (dataset.sizes["y"], dataset.sizes["x"]))
    root = zarr.open_group(str(path), mode="r+")
    nodes = [root, *(root[name] for name, var in dataset.data_vars.items() if var.dims[-2:] == ("y", "x"))]
    for node in nodes:
        node.attrs.update(_with_conventions(node.attrs, attrs))


def _with_conventions(existing, attrs: dict) -> dict:
    """``attrs``, whose ``zarr_conventions`` also keep the declarations already on the node that are not theirs."""
    ours = {c["uuid"] for c in geozarr.DECLARATIONS.values()}  # multiscales too: declared again with its levels
    kept = [c for c in existing.get("zarr_conventions") or [] if not (isinstance(c, dict) and c.get("uuid") in ours)]
    return {**attrs, "zarr_conventions": kept + attrs["zarr_conventions"]}


def compressors(dtype, zarr_format: int) -> list:
    """The compressors of an array stored as ``dtype``, in the codec types of ``zarr_format`` (v2 numcodecs', v3
    zarr's own), as measured on real outputs by ``python -m benchmarks.codecs`` (docs: concepts/resume, Codecs).
    Floats (embeddings, probabilities, images) barely compress; blosc lz4 with bit shuffling beats zstd on both
    counts there: ratios of 1.22-1.26 against zstd's 1.09-1.13, at 1.8-2.4x its speed. Integers (classes,
    tokens, quantized values) take zstd at level 1: 3-9 % larger than level 3, at up to 4x its speed. GDAL
    reads both (v2 from 3.6, v3 from 3.11).

    Example:
        >>> compressors(np.float32, 2)
        [Blosc(cname='lz4', clevel=5, shuffle=BITSHUFFLE, blocksize=0)]
        >>> compressors(np.uint8, 3)
        [ZstdCodec(level=1, checksum=False)]
    """
    if np.issubdtype(dtype, np.floating):
        if zarr_format == 2:
            from numcodecs import Blosc

            return [Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE)]
        return [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]
    return [_zstd(zarr_format, level=1)]


def _zstd(zarr_format: int, level: int = 3):
    """Zstandard in the codec type of each format (v2 takes numcodecs', v3 zarr's own)."""
    if zarr_format == 2:
        from numcodecs import Zstd

        return Zstd(level=level)
    return zarr.codecs.ZstdCodec(level=level)


def consolidate(path) -> None:
    """Consolidate a store's metadata (readers look for it first; metadata never changes after the template)."""
    with warnings.catch_warnings():  # consolidated metadata is a zarr-python extension for v3; readers expect it
        warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(str(path))


def open_result(path: str | os.PathLike, *, zone: str | None = None) -> xr.DataArray | xr.Dataset:
    """Open a store written by xterramind as the georeferenced result that was written: the DataArray
    (embeddings, tokens) or Dataset (generated products), lazy, with its CRS, transform and attributes.
    Any other zarr store opens as a Dataset, its CF grid mapping decoded.

    A plain ``xarray.open_zarr`` without ``decode_coords="all"`` leaves ``spatial_ref`` a data variable
    and ``rio.crs`` unset; this is the way that gives the result back as it was. An area run's store
    holds one store per zone: name it with ``zone=`` (a run of one zone needs none).

    Raises:
        StoreError: nothing at ``path``, not a zarr store, or a run store without a valid ``zone``.

    Example:
        >>> lulc = xterramind.open("xterramind-demo/lulc.zarr")
        >>> lulc.rio.crs, lulc["LULC"].attrs["model"]
        >>> europe = xterramind.open("europe.zarr", zone="utm32n")
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise StoreError(f"there is no store at {path}")
    root = _group(path, None)
    zones = sorted(root.attrs.get(RUN_ATTR, {}).get("zones", {}))
    if zones:
        zone = zone if zone is not None or len(zones) > 1 else zones[0]
        if zone not in zones:
            raise StoreError(f"{path} is an area run with zones {zones}; open one with zone=, e.g. zone={zones[0]!r}")
    elif zone is not None:
        raise StoreError(f"{path} is a single store, not an area run: it has no zones; leave out zone=")
    if not list(_group(path, zone).array_keys()):
        raise ForeignStoreError(f"{path} holds no arrays: it is not a store of results")
    dataset = xr.open_zarr(str(path), group=zone, decode_coords="all")  # any georeferenced zarr opens the same way
    name = dataset.attrs.get(RESULT_VARIABLE)
    if name not in dataset.data_vars:
        return dataset
    result = dataset[name]
    result.encoding["source"] = dataset.encoding["source"]  # where it reads from (so it is never overwritten)
    return result


def _group(path: Path, name: str | None):
    node = _group_or_none(path, name)
    if node is None:
        raise ForeignStoreError(f"{path} is not a zarr store written by xterramind")
    return node


def _group_or_none(path, name: str | None):
    try:
        return zarr.open_group(str(path), path=name, mode="r")
    except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError,
            zarr.errors.NodeTypeValidationError):
        return None
