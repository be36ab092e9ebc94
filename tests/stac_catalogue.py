"""A static STAC catalogue over the real Sentinel-2 fixture COGs (tests/data/s2l1c_virginia), for offline tests."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from pyproj import Transformer
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension

FIXTURES = Path(__file__).parent / "data" / "s2l1c_virginia"
L2A_NAMES = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
             "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}
EPSG = 32618


def lonlat_bbox(bounds):
    """The lon/lat envelope of a UTM rectangle (all four corners: the grid is rotated against lon/lat)."""
    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)
    lons, lats = to_lonlat.transform([bounds.left, bounds.left, bounds.right, bounds.right],
                                     [bounds.bottom, bounds.top, bounds.bottom, bounds.top])
    return [min(lons), min(lats), max(lons), max(lats)]


def make_item(item_id, files: dict[str, Path], when: datetime, properties=None, projection=True, bbox=None):
    """A STAC item over real COGs, with per-asset projection and raster metadata as public catalogues have."""
    if bbox is None:
        with rasterio.open(next(iter(files.values()))) as first:
            bbox = lonlat_bbox(first.bounds)
    west, south, east, north = bbox
    footprint = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]]}
    item = pystac.Item(item_id, footprint, bbox, when, properties=dict(properties or {}))
    if projection:
        ProjectionExtension.ext(item, add_if_missing=True).code = f"EPSG:{EPSG}"
    for key, path in files.items():
        asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(key, asset)
        with rasterio.open(path) as source:
            if projection:
                projected = ProjectionExtension.ext(asset)
                projected.shape, projected.transform = [source.height, source.width], list(source.transform)[:6]
            RasterExtension.ext(asset, add_if_missing=True).bands = [
                RasterBand.create(nodata=source.nodata, data_type=str(source.dtypes[0]))]
    return item


def catalogue(tmp_path, items) -> Path:
    catalogue = pystac.Catalog("test", "offline test catalogue")
    catalogue.add_items(items)
    catalogue.normalize_hrefs(str(tmp_path / "stac"))
    catalogue.save(pystac.CatalogType.SELF_CONTAINED)
    return tmp_path / "stac" / "catalog.json"


def write_cog(path: Path, data: np.ndarray, transform, crs=EPSG, nodata=None):
    profile = {"driver": "GTiff", "height": data.shape[-2], "width": data.shape[-1], "count": 1, "dtype": data.dtype,
               "crs": f"EPSG:{crs}", "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": 256,
               "blockysize": 256}
    with rasterio.open(path, "w", **profile) as sink:
        sink.write(data, 1)
    return path


def l1c_files():
    return {path.stem: path for path in sorted(FIXTURES.glob("*.tif"))}
