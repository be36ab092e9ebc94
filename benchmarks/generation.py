"""Generation throughput: LULC generation per tile, and the diffusion decoder per step, against IBM's reference.

    python -m benchmarks.generation [--reference-python /path/to/venv-with-terratorch/bin/python]

(a) S2L2A -> LULC for one 224 px tile (encoder, one decoding pass, sampling, the LULC tokenizer's ViT
    decoder), tiny and base, batch 1 and 4, fp32 on the CPU: seconds per tile and tiles/s;
(b) one DDIM step of an image tokenizer's diffusion UNet (S1GRD) per tile, one tile at a time against
    a batch of 4.
With a terratorch Python, the reference's times are measured in alternation and the ratios printed.
The reference times one whole batched call; xterramind runs what its engine runs (model.generate with
one seed per tile; the tokenizer's DDIM decode).
"""

from __future__ import annotations

import argparse
import os

import torch

import xterramind
from benchmarks.model import Reference
from benchmarks.timing import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", default=os.environ.get("XTERRAMIND_REFERENCE_PYTHON"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["tiny", "base"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reference = Reference(args.reference_python, args.threads) if args.reference_python else None
    print(f"CPU, {args.threads} threads, fp32, 224 x 224 tiles, random weights; best of {args.rounds} alternating rounds")
    print(f"{'what':<32}{'batch':>6}{'s/tile':>9}{'tiles/s':>9}" + (f"{'reference s/tile':>18}{'speed-up':>10}" if reference else ""))

    def row(label, batch, ours, kind, variant):
        theirs = []
        best = []
        for _ in range(args.rounds):
            best.append(measure(ours, 2, warmup=1).seconds / batch)
            if reference:
                theirs.append(reference.time(variant, batch, "fp32", 2, kind=kind).seconds / batch)
        line = f"{label:<32}{batch:>6}{min(best):>9.3f}{1 / min(best):>9.2f}"
        if reference:
            line += f"{min(theirs):>18.3f}{min(theirs) / min(best):>10.2f}"
        print(line, flush=True)

    for variant in args.models:
        model = xterramind.load_model(variant, weights="random", device="cpu", precision="fp32")
        model.tokenizer("LULC")
        for batch in (1, 4):
            x = torch.randn(batch, 12, 224, 224)
            row(f"{variant}: S2L2A -> LULC", batch,
                lambda x=x, batch=batch, model=model: model.generate({"S2L2A": x}, ["LULC"], seeds=list(range(batch))),
                "generate", variant)
    model = xterramind.load_model("tiny", weights="random", device="cpu", precision="fp32")
    tokenizer = model.tokenizer("S1GRD")
    for batch in (1, 4):
        tokens = torch.randint(0, 15360, (batch, 14, 14))
        noise = torch.randn(batch, 2, 224, 224)

        def step(tokens=tokens, noise=noise):
            with torch.inference_mode():
                tokenizer.decode_diffusion(tokens, noise, 1)

        row("diffusion UNet, 1 DDIM step", batch, step, "diffusion", "tiny")


if __name__ == "__main__":
    main()
