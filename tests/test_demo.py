"""``xterramind demo`` (the README's first command) end to end, on the micro model: both stores and the
quicklook, readable back; run twice, it replaces its own output."""

import numpy as np
import xarray as xr

from xterramind import cli


def test_the_demo_writes_both_stores_and_the_quicklook(tmp_path, capsys):
    output = tmp_path / "demo"
    for _ in range(2):
        assert cli.main(["demo", "--model", "terramind_micro", "--output", str(output), "--zarr-format", "2"]) == 0
    printed = capsys.readouterr()
    assert "RUNNING ON RANDOM WEIGHTS" in printed.err and "replacing the previous demo output" in printed.out
    embeddings = xr.open_zarr(output / "embeddings.zarr", decode_coords="all")["embeddings"]
    lulc = xr.open_zarr(output / "lulc.zarr", decode_coords="all")["LULC"]
    assert embeddings.shape[1:] == (30, 30) and np.isfinite(embeddings.values).all()
    assert lulc.shape == (480, 480) and lulc.rio.crs.to_epsg() == 32618 and set(np.unique(lulc.values)) <= set(range(10))
    assert (output / "quicklook.png").stat().st_size > 20_000
