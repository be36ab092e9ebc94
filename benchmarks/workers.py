"""Dask workers at full speed: the model inside a worker against the model in this process, side by side.

    python -m benchmarks.workers [--calls 8] [--rounds 3] [--threads N] [--regions 6] [--no-area]

(a) model calls: tiny (random weights, CPU, fp32) on a batch of 8 standardized 12-band 224 x 224 S2L2A tiles, here
    (``--threads`` torch threads, default every core) and inside the worker of a 1-worker LocalCluster of as many
    threads (processes, distributed's default nanny: the environment every such worker gets), alternately, ``rounds``
    rounds; ms per call (median of the clean repetitions, ``benchmarks.timing``; best round) and the ratio to here.
    Two more rows say what a task adds per call: one task per call with the batch held in the worker (scheduler
    and event loop), and one with the batch sent from here and the embeddings sent back (serialization too). Those
    two are timed from here, where the worker's work is the rest of the machine's: their repetitions never count
    as clean, so all are kept.
(b) area: ``runner.run`` of ``embed`` over synthetic regions on a 2-worker LocalCluster (1 thread each, default
    nanny) against the model alone (``runner.forecast``: the runner's own model task timed in this process on
    ``--threads`` torch threads), tiles/s and the ratio, best of ``rounds`` alternations.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import xterramind
from benchmarks.timing import Timing, measure

MODEL = "terramind_v1_tiny"
BATCH = 8


def load():
    return xterramind.load_model(MODEL, weights="random", device="cpu", precision="fp32")


@functools.cache
def tiles(model, batch: int = BATCH) -> torch.Tensor:
    """A standardized S2L2A batch from plausible reflectances (the same in every process, made once in each)."""
    reflectance = 300.0 + 4000.0 * torch.rand(batch, 12, 224, 224, generator=torch.Generator().manual_seed(0))
    return model.normalize("S2L2A", reflectance)


def timed_calls(model, calls: int) -> Timing:
    """``calls`` timed model calls where this runs (here, or inside a worker as one task)."""
    x = tiles(model)
    return measure(lambda: model.encode({"S2L2A": x}, layers=-1), calls, warmup=1)


def one_call(model) -> int:
    """One model call on the batch held where this runs: the tiles it embedded."""
    return len(model.encode({"S2L2A": tiles(model)}, layers=-1))


def embed_batch(model, x: np.ndarray) -> np.ndarray:
    """One model call on the batch given: its embeddings, back to the caller."""
    return model.encode({"S2L2A": x}, layers=-1).numpy()


def model_calls(threads: int, calls: int, rounds: int) -> list[tuple[str, Timing]]:
    """(a): the best round of each way of calling the model."""
    from distributed import Client, LocalCluster

    model = load()
    batch = tiles(model).numpy()
    with LocalCluster(n_workers=1, threads_per_worker=threads, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        ways = {
            "in this process": lambda: timed_calls(model, calls),
            "in a worker, one task": lambda: client.submit(timed_calls, model, calls, pure=False).result(),
            "in a worker, a task per call": lambda: measure(
                lambda: client.submit(one_call, model, pure=False).result(), calls, warmup=1),
            "  ... batch sent, result back": lambda: measure(
                lambda: client.submit(embed_batch, model, batch, pure=False).result(), calls, warmup=1),
        }
        best: dict[str, Timing] = {}
        with warnings.catch_warnings():  # sending the batch is the point of the last row
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            for _ in range(rounds):
                for name, way in ways.items():
                    timing = way()
                    if name not in best or timing.seconds < best[name].seconds:
                        best[name] = timing
    return list(best.items())


def area(threads: int, regions: int, rounds: int) -> tuple[float, float, int, tuple[float, float, float]]:
    """(b): tiles/s of the model alone here and of a run on a 2-worker LocalCluster (best rounds), the tiles, and
    the best run's mean read, model and write seconds per region."""
    from distributed import Client, LocalCluster

    from xterramind import runner
    from xterramind.planner import plan_area
    from xterramind.sources import SyntheticSource

    model, source = load(), SyntheticSource()
    plan = plan_area((9.0, 45.0, 9.0 + 0.2 * regions, 45.1), region=96)  # regions of 15.4 km, 64 tiles each (inner)
    alone, run, count, stages = 0.0, 0.0, 0, (0.0, 0.0, 0.0)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory(prefix="xterramind-bench-") as folder:
        runner.run(plan, source, "embed", model, Path(folder) / "warm.zarr", client=client, limit=2, gpu=False)
        for number in range(rounds):
            alone = max(alone, runner.forecast(plan, source, "embed", model).tiles_per_second)
            report = runner.run(plan, source, "embed", model, Path(folder) / f"run-{number}.zarr", client=client,
                                limit=regions, gpu=False)
            if report.tiles / report.seconds > run:
                run, count = report.tiles / report.seconds, report.tiles
                stages = tuple(statistics.mean(getattr(o, f"{stage}_seconds") for o in report.outcomes)
                               for stage in ("read", "model", "write"))
    return alone, run, count, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8, help="timed model calls per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads here, worker threads")
    parser.add_argument("--regions", type=int, default=6, help="regions run in (b)")
    parser.add_argument("--no-area", action="store_true", help="skip (b)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"(a) {MODEL}, random weights, CPU, fp32, batch {BATCH} of 12 x 224 x 224; {args.threads} torch threads "
          f"here, a 1-worker LocalCluster of {args.threads} threads (default nanny); best of {args.rounds} rounds")
    rows = model_calls(args.threads, args.calls, args.rounds)
    here = rows[0][1].seconds
    print(f"{'':<32}{'ms/call':>9}{'x here':>8}{'clean':>8}")
    for name, timing in rows:
        print(f"{name:<32}{timing.seconds * 1000:>9.1f}{here / timing.seconds:>8.2f}{timing.kept:>5}/{timing.total}")
    if not args.no_area:
        alone, run, count, (read, modelled, write) = area(args.threads, args.regions, args.rounds)
        print(f"\n(b) embed of {count} synthetic S2L2A tiles ({args.regions} regions) on a 2-worker LocalCluster "
              f"(1 thread each, default nanny) against the model alone here ({args.threads} torch threads)")
        print(f"{'model alone':<32}{alone:>9.1f} tiles/s")
        print(f"{'2-worker LocalCluster':<32}{run:>9.1f} tiles/s{run / alone:>8.2f} x the model alone")
        print(f"  per region: read {read:.2f} s, model {modelled:.2f} s, write {write:.2f} s (mean)")


if __name__ == "__main__":
    main()
