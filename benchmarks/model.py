"""Encoder throughput: xterramind's TerraMind against IBM's reference, side by side.

    python -m benchmarks.model [--reference-python /path/to/venv-with-terratorch/bin/python]

For tiny and base, batch 1 and 8, one 224 x 224 S2L2A tile per item, fp32 and bf16 autocast, on
the CPU (or the GPU with --device cuda): tiles/s, GFLOP/tile and, when a Python with terratorch is
given (or $XTERRAMIND_REFERENCE_PYTHON), the reference's tiles/s measured in alternation with ours,
and the ratio. xterramind runs what the engine runs (the last layer); the reference computes all
layers, as its backbone always does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import xterramind
from benchmarks.timing import Timing, measure

ROOT = Path(__file__).resolve().parents[1]


def gflop_per_tile(model) -> float:
    """FLOPs of one tile, attention included (the fused CPU attention kernel is not counted, the math one is)."""
    x = torch.randn(1, 12, 224, 224, device=model.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), counter:
        model.module.encode({"S2L2A": x}, layers=-1)
    return counter.get_total_flops() / 1e9


class Reference:
    """terratorch in its own interpreter, answering timing requests one at a time."""

    def __init__(self, python: str, threads: int):
        self.process = subprocess.Popen(
            [python, str(ROOT / "benchmarks" / "reference_worker.py"), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/tmp",
        )

    def time(self, variant: str, batch: int, precision: str, repetitions: int, kind: str = "encode") -> Timing:
        request = {"kind": kind, "variant": variant, "batch": batch, "precision": precision, "repetitions": repetitions}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the reference worker stopped; is terratorch installed in that Python?")
        return Timing(**json.loads(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", default=os.environ.get("XTERRAMIND_REFERENCE_PYTHON"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of ours and the reference's timing")
    parser.add_argument("--models", nargs="+", default=["tiny", "base"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference = Reference(args.reference_python, args.threads) if args.reference_python else None

    header = f"{'model':<6}{'batch':>6}{'precision':>10}{'GFLOP/tile':>12}{'tiles/s':>10}{'GFLOP/s':>9}"
    header += f"{'reference tiles/s':>19}{'ratio':>7}" if reference else ""
    print(f"device {args.device}, {args.threads} threads, 224 x 224 S2L2A tiles; medians of clean repetitions")
    print(header)
    for variant in args.models:
        models = {p: xterramind.load_model(variant, weights="random", device=args.device, precision=p) for p in ("fp32", "bf16")}
        flops = gflop_per_tile(models["fp32"])
        for batch in (1, 8):
            x = torch.randn(batch, 12, 224, 224, device=models["fp32"].device)
            repetitions = max(3, int(40 / (flops * batch)))  # about a few seconds per side and round
            for precision, model in models.items():
                ours, theirs = [], []
                for _ in range(args.rounds):
                    ours.append(measure(lambda model=model, x=x: model.encode({"S2L2A": x}, layers=-1), repetitions))
                    if reference:
                        theirs.append(reference.time(variant, batch, precision, repetitions))
                speed = batch / min(t.seconds for t in ours)
                row = f"{variant:<6}{batch:>6}{precision:>10}{flops:>12.2f}{speed:>10.1f}{speed * flops:>9.0f}"
                if reference:
                    their_speed = batch / min(t.seconds for t in theirs)
                    row += f"{their_speed:>19.1f}{speed / their_speed:>7.2f}"
                print(row + ("  (noisy)" if any(t.noisy for t in ours + theirs) else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
