"""The bundled real Sentinel-2 sample scene (CC0); see README.md beside this file."""

from pathlib import Path

HERE = Path(__file__).parent
SAMPLE_STACK = HERE / "s2l1c_virginia_stack12_10m.tif"
SAMPLE_B10 = HERE / "s2l1c_virginia_B10_60m.tif"
