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
    assert "xterramind demo --model terramind_v1_tiny --download" in printed.err  # how to get the real thing
    embeddings = xr.open_zarr(output / "embeddings.zarr", decode_coords="all")["embeddings"]
    lulc = xr.open_zarr(output / "lulc.zarr", decode_coords="all")["LULC"]
    assert embeddings.shape[1:] == (30, 30) and np.isfinite(embeddings.values).all()
    assert lulc.shape == (480, 480) and lulc.rio.crs.to_epsg() == 32618 and set(np.unique(lulc.values)) <= set(range(10))
    assert (output / "quicklook.png").stat().st_size > 20_000


def test_asked_for_the_official_weights_offline_the_demo_fails_with_the_fix(offline, tmp_path, capsys):
    output = tmp_path / "demo"
    assert cli.main(["demo", "--download", "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert 1 <= len(offline) <= 2, offline  # told at once: one probe of the hub, not huggingface_hub's retries
    assert err.startswith("xterramind: error:") and "RUNNING ON RANDOM WEIGHTS" not in err
    assert not (output / "embeddings.zarr").exists() and not (output / "lulc.zarr").exists()
    for needed in ("TerraMind_v1_tiny.pt", "could not be downloaded", "hf download", "XTERRAMIND_WEIGHTS_DIR",
                   "leave out --download"):
        assert needed in err, needed
    assert "load_model(" not in err and "weights=" not in err  # the fixes in the command line's words
    assert cli.main(["demo", "--download", "--model", "terramind_micro", "--output", str(output)]) == 1
    assert "no official checkpoint" in capsys.readouterr().err and not (output / "lulc.zarr").exists()


def test_without_download_the_demo_does_not_touch_the_network_and_names_download(offline, capsys):
    model = cli._official_or_random("terramind_v1_tiny", download=False)
    assert model.is_random and offline == []
    err = capsys.readouterr().err
    assert "RUNNING ON RANDOM WEIGHTS" in err and "xterramind demo --model terramind_v1_tiny --download" in err
