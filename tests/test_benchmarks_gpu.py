"""``python -m benchmarks.gpu``: the GPU benchmark runs on the CPU at its small size, with every section measured and
printed, and its FLOP count is the hand count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu
from benchmarks.model import gflop_per_tile
from xterramind.models.registry import get_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The CPU-sized run, once: its JSON and its printed table."""
    folder = tmp_path_factory.mktemp("gpu-bench")
    command = [sys.executable, "-m", "benchmarks.gpu", "--small", "--device", "cpu", "--json", str(folder / "gpu.json"),
               "--workdir", str(folder)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((folder / "gpu.json").read_text()), done.stdout.splitlines(), folder


def printed(lines: list[str], section: str, label: str) -> str:
    """The one table row of ``section`` whose figure contains ``label``."""
    rows = [line for line in lines if line.startswith(section) and label in line]
    assert len(rows) == 1, (section, label, rows)
    return rows[0]


def test_the_small_run_measures_every_section_and_prints_each_figure(small_run):
    data, lines, _ = small_run
    assert set(gpu.SECTIONS) <= set(data)
    for section in gpu.SECTIONS:
        assert "error" not in data[section] and "skipped" not in data[section], (section, data[section])
    alone, e2e, generation, decoding = data["model_alone"], data["end_to_end"], data["generation"], data["decoding"]
    assert alone["tiles_per_s"] > 0 and alone["pinned_tiles_per_s"] > 0
    assert set(alone["batches"]) == {"2", "4"}
    assert 0 < e2e["ratio"] < 1.5 and e2e["tiles"] == 16
    assert e2e["ratio"] == pytest.approx(e2e["tiles_per_s"] / e2e["model_tiles_per_s"])
    assert generation["km2_per_s"] > 0 and generation["tiles_per_s"] > 0 and generation["km2"] > 0
    assert generation["km2_per_s"] == pytest.approx(generation["km2"] * generation["tiles_per_s"] / 9)  # 9 tiles
    assert decoding["token_pass_ms"] > 0 and decoding["lulc_decoder_ms"] > 0 and decoding["diffusion_step_ms"] > 0
    assert data["matmul"]["tflops"] > 0
    assert data["environment"]["device_name"].startswith("cpu") and data["environment"]["precision"] == "bf16"
    assert "compile" in data["compile"]["not_asked"] and "terratorch" in data["terratorch"]["absent"]

    assert gpu.figure(alone["tiles_per_s"]) in printed(lines, "model_alone", "best: tiles/s")
    assert gpu.figure(e2e["ratio"]) in printed(lines, "end_to_end", "ratio")
    assert gpu.figure(e2e["tiles_per_s"]) in printed(lines, "end_to_end", "embed -> to_zarr")
    assert gpu.figure(generation["km2_per_s"]) in printed(lines, "generation", "km^2/s")
    assert gpu.figure(decoding["diffusion_step_ms"]) in printed(lines, "decoding", "DDIM step")
    assert not any("FAILED" in line or "skipped" in line for line in lines)


def test_without_a_known_gpu_the_fraction_of_the_peak_is_not_available(small_run):
    data, lines, _ = small_run
    assert data["environment"]["peak_tflops"] is None and data["model_alone"]["peak_fraction"] is None
    assert printed(lines, "model_alone", "fraction of the peak bf16 rate").split()[-1] == "n/a"


def test_the_run_leaves_no_cube_or_output_behind(small_run):
    _, _, folder = small_run
    assert [p.name for p in folder.iterdir()] == ["gpu.json"]


def test_the_flop_count_is_the_hand_count_for_the_micro_configurations(micro):
    tokens, patch_inputs = 14 * 14, 12 * 16 * 16
    # terramind_micro: dim 64, 2 blocks, GELU MLP with hidden 256 (two matrices)
    embedding = 2 * tokens * patch_inputs * 64
    block = 2 * tokens * (3 * 64 * 64 + 64 * 64 + 2 * 64 * 256) + 2 * (2 * tokens * tokens * 64)
    assert gpu.encoder_flops(get_config("terramind_micro")) == embedding + 2 * block == 135_274_496
    # terramind_micro_swiglu: SwiGLU has three matrices, hidden int(2 * 256 / 3) = 170
    block = 2 * tokens * (3 * 64 * 64 + 64 * 64 + 3 * 64 * 170) + 2 * (2 * tokens * tokens * 64)
    assert gpu.encoder_flops(get_config("terramind_micro_swiglu")) == embedding + 2 * block
    # and what torch counts running the model
    assert gflop_per_tile(micro) * 1e9 == gpu.encoder_flops(micro.config)


def test_the_peak_is_the_longest_matching_name():
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0 and gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0 and gpu.peak_tflops("NVIDIA L40S") == 362.0
    assert gpu.peak_tflops("NVIDIA GeForce GTX 1080") is None


def test_a_failing_section_is_a_row_and_the_next_still_runs(tmp_path, capsys):
    report = gpu.Report(str(tmp_path / "out.json"), minutes=5)

    def broken():
        raise RuntimeError("CUDA error: an illegal memory access\nmore lines")

    report.run("matmul", broken)
    report.run("model_alone", lambda: report.row("model_alone", "best: tiles/s", 12.5, "tiles/s", key="tiles_per_s"))
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved == {"matmul": {"error": "RuntimeError: CUDA error: an illegal memory access\nmore lines"},
                     "model_alone": {"tiles_per_s": 12.5}}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "matmul      FAILED RuntimeError: CUDA error: an illegal memory access"
    assert out[1].startswith("model_alone") and out[1].split()[-2:] == ["12.5", "tiles/s"]


def test_a_measurement_past_the_budget_is_skipped_and_said(capsys):
    report = gpu.Report(None, minutes=0.5)
    assert report.fits("end_to_end", "round 1", 1.0)
    assert not report.fits("end_to_end", "round 2", 60.0)
    assert report.data == {"end_to_end": {"skipped": ["round 2"]}}
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("end_to_end  round 2") and "skipped (budget: about 60 s needed" in line
