"""The bundled real Sentinel-2 sample scene (CC0); see README.md beside this file."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
SAMPLE_STACK = HERE / "s2l1c_virginia_stack12_10m.tif"
SAMPLE_B10 = HERE / "s2l1c_virginia_B10_60m.tif"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def open_sample(chunks: int = 240):
    """The bundled real Sentinel-2 L1C scene as a lazy, georeferenced cube.

    A DataArray ``(band, y, x)``: 13 bands (B01 ... B12 with B8A and B10, nearest-resampled to 10 m),
    480 x 480 px (4.8 km x 4.8 km) on the Eastern Shore of Virginia, EPSG:32618, uint16 top-of-atmosphere
    digital numbers, dask-backed with ``chunks`` x ``chunks`` px chunks. B10 (cirrus) marks it as L1C,
    so ``embed`` feeds it to TerraMind's S2L1C modality. The window is fully covered, so no nodata is
    declared (the files' nodata 0 would otherwise mask B10's genuine zeros over dark water).

    Example:
        >>> cube = xterramind.open_sample()
        >>> cube.sizes
        Frozen({'band': 13, 'y': 480, 'x': 480})
    """
    import rioxarray
    import xarray as xr

    stack = rioxarray.open_rasterio(SAMPLE_STACK, chunks={"band": -1, "y": chunks, "x": chunks})
    cirrus = rioxarray.open_rasterio(SAMPLE_B10, chunks={"band": -1, "y": chunks, "x": chunks})
    cirrus = cirrus.reindex(x=stack.x, y=stack.y, method="nearest")  # 60 m -> 10 m, each pixel 6 x 6
    stack = stack.assign_coords(band=[b for b in BANDS if b != "B10"])
    cube = xr.concat([stack.isel(band=slice(0, 10)), cirrus.assign_coords(band=["B10"]), stack.isel(band=slice(10, 12))], dim="band")
    cube = cube.chunk({"band": -1, "y": chunks, "x": chunks})
    cube.name = "reflectance"
    cube.encoding = {}
    cube.attrs = {
        "title": "Sentinel-2 L1C sample, Eastern Shore of Virginia (CC0, Copernicus Sentinel data)",
        "processing_level": "L1C",
        "units": "top-of-atmosphere reflectance x 10000",
    }
    return cube.rio.write_crs(stack.rio.crs)
