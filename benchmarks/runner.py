"""Area runs: planning time at continent scale, per-region costs, throughput on 1 and 2 workers, and a
projection to N GPUs.

    python -m benchmarks.runner [--model terramind_v1_tiny] [--regions 6]

(a) planning a 1,000,000 km2 and a 10,400,000 km2 (Europe) box: seconds, regions, tiles;
(b) the fixed cost of a region: regions without data (read task says "nothing", write task marks the
    ledger) pushed through a 2-worker cluster — what the driver, scheduler and ledger cost per region;
(c) throughput of embedding synthetic Sentinel-2 regions on a LocalCluster of 1 worker (torch on both
    cores) and of 2 workers (one core each), with the mean read / model / write seconds per region,
    next to the dry run's forecast of the same plan (``runner.forecast``: the model alone, measured on both
    cores in this process) and the ratio of the run's rate to the forecast's;
(d) a projection to N GPUs from (b) and (c) and the limits in the design notes (dask_patterns.md §6).

This machine has no GPU: the GPU tile rate in (d) is an assumption taken from a public H100 measurement
(ViT-B/16 bf16, 7,717 img/s; calebrob6/throughput-bench, quoted in dask_patterns.md §6.2), not measured here.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

EUROPE = (-10.0, 35.0, 30.0, 70.0)
MILLION = (4.0, 43.0, 17.0, 52.3)
GPU_TILES_PER_S = 7000.0  # assumed H100 rate for the TerraMind-B encoder, one modality (see the docstring)
S2_BYTES_PER_TILE = 12 * 224 * 224 * 2  # decoded uint16 input (dask_patterns.md §6.3)
CPU_DECODE_BYTES_PER_S = 1e9  # per core, a rule of thumb (dask_patterns.md §6.3)


def planning() -> list[tuple]:
    from xterramind.planner import plan_area

    rows = []
    for name, box in (("1,000,000 km2", MILLION), ("Europe box", EUROPE)):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            plan = plan_area(box)
            times.append(time.perf_counter() - started)
        rows.append((name, plan.area_km2, len(plan.zones), plan.regions, plan.tile_count(), min(times)))
    return rows


def region_overhead(client, model, count: int = 200) -> tuple[float, float]:
    """Seconds per region of wall time and of task time, from regions that hold no data."""
    from xterramind import runner
    from xterramind.planner import plan_area
    from xterramind.sources import SyntheticSource

    plan = plan_area(MILLION, region=48)
    source = SyntheticSource(land=(16.9, 52.2, 17.0, 52.3))  # the last corner: the first regions are empty
    with tempfile.TemporaryDirectory() as folder:
        runner.run(plan, source, "embed", model, Path(folder) / "warm.zarr", client=client, limit=20, gpu=False)
        report = runner.run(plan, source, "embed", model, Path(folder) / "empty.zarr", client=client, limit=count,
                            gpu=False, in_flight=16)
    assert report.empty == count
    run_seconds = sum(o.read_seconds + o.write_seconds for o in report.outcomes)
    return (report.seconds - report.prepare_seconds) / count, run_seconds / count


def throughput(model_name: str, regions: int, workers: int) -> dict:
    """Embed ``regions`` synthetic regions of 96 tokens (64 tiles) on a LocalCluster of ``workers``."""
    from distributed import Client, LocalCluster

    import xterramind
    from xterramind import runner
    from xterramind.sources import SyntheticSource

    model = xterramind.load_model(model_name, weights="random", device="cpu", precision="fp32")
    plan = _throughput_plan(regions)
    cells = plan.zones[0].region_indices
    threads = str(2 // workers)
    with runner.model_worker_environ():  # as runner.local_cluster starts its workers
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0",
                               env={"XTERRAMIND_TORCH_THREADS": threads})
    with cluster, Client(cluster) as client, tempfile.TemporaryDirectory() as folder:
        runner.run(plan, SyntheticSource(), "embed", model, Path(folder) / "warm.zarr", client=client, limit=workers,
                   gpu=False)  # every worker loads the model
        report = runner.run(plan, SyntheticSource(), "embed", model, Path(folder) / "run.zarr", client=client,
                            limit=regions, gpu=False)
        written = sum(p.stat().st_size for p in (Path(folder) / "run.zarr").rglob("*") if p.is_file())
        overhead = region_overhead(client, model) if workers == 2 else None
    outcomes = report.outcomes
    return {
        "workers": workers, "regions": len(outcomes), "tiles": report.tiles, "seconds": report.seconds,
        "tiles_per_s": report.tiles / report.seconds, "tiles_per_region": report.tiles / len(outcomes),
        "read": statistics.mean(o.read_seconds for o in outcomes),
        "model": statistics.mean(o.model_seconds for o in outcomes),
        "write": statistics.mean(o.write_seconds for o in outcomes),
        "bytes_per_tile": written / report.tiles, "overhead": overhead, "grid_regions": len(cells),
        "raw_bytes_per_region": 96 * 96 * model.config.dim * 4,
    }


def _throughput_plan(regions: int):
    from xterramind.planner import plan_area

    return plan_area((9.0, 45.0, 9.0 + 0.2 * regions, 45.1), region=96)  # a region is 15.4 km


def forecast(model_name: str, regions: int):
    """The dry run of the plan ``throughput`` runs: its measured model rate and what it was measured on."""
    import torch

    import xterramind
    from xterramind import runner
    from xterramind.sources import SyntheticSource

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = xterramind.load_model(model_name, weights="random", device="cpu", precision="fp32")
        result = runner.forecast(_throughput_plan(regions), SyntheticSource(), "embed", model)
    finally:
        torch.set_num_threads(threads)
    return result.tiles_per_second, result.measured_on


def projection(overhead: float, one: dict, tiles_per_region: dict[int, int]) -> list[tuple]:
    """Tiles/s and minutes for 1M and 10M km2 on N GPUs: the least of what the GPUs and what the driver and
    scheduler (one region per ``overhead`` seconds) can do, for regions of 256 and of 512 tokens."""
    rows = []
    base_bytes_per_tile = 12 * 12 * 768 * 4  # the tokens a tile owns, float32 TerraMind-B embeddings
    write_seconds_per_tile = one["write"] / one["raw_bytes_per_region"] * base_bytes_per_tile
    for gpus in (1, 8, 64, 512):
        rates = {side: min(gpus * GPU_TILES_PER_S, tiles / overhead) for side, tiles in tiles_per_region.items()}
        best = max(rates.values())
        rows.append((gpus, rates[256], rates[512], GPU_TILES_PER_S * S2_BYTES_PER_TILE / CPU_DECODE_BYTES_PER_S,
                     GPU_TILES_PER_S * write_seconds_per_tile, 310_000 / best / 60, 3_140_000 / best / 60))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="terramind_v1_tiny")
    parser.add_argument("--regions", type=int, default=6)
    args = parser.parse_args()

    print("(a) planning (best of 3)")
    print(f"{'area':<15}{'km2':>13}{'zones':>7}{'regions':>9}{'tiles':>11}{'seconds':>9}")
    for name, area, zones, regions, tiles, seconds in planning():
        print(f"{name:<15}{area:>13,.0f}{zones:>7}{regions:>9,}{tiles:>11,}{seconds:>9.3f}")

    alone, measured_on = forecast(args.model, args.regions)
    runs = [throughput(args.model, args.regions, workers) for workers in (1, 2)]
    overhead, in_tasks = runs[1]["overhead"]
    print(f"\n(b) fixed cost per region (200 regions without data, 2 workers, 16 in flight; scheduler, driver and "
          f"workers share the 2 cores): {overhead * 1000:.1f} ms wall, of which {in_tasks * 1000:.1f} ms in the tasks "
          "(source check + ledger mark)")
    print(f"\n(c) embedding synthetic S2 with {args.model} (random weights), {runs[0]['tiles_per_region']:.0f} tiles per "
          f"region, this machine (2 cores); the dry run's forecast, 2 torch threads: {alone:.1f} tiles/s\n"
          f"({measured_on})")
    print(f"{'workers':>8}{'regions':>9}{'tiles/s':>9}{'run/forecast':>14}{'read s':>8}{'model s':>9}{'write s':>9}"
          f"{'KB/tile':>9}")
    for run in runs:
        print(f"{run['workers']:>8}{run['regions']:>9}{run['tiles_per_s']:>9.1f}{run['tiles_per_s'] / alone:>14.2f}"
              f"{run['read']:>8.2f}{run['model']:>9.2f}{run['write']:>9.2f}{run['bytes_per_tile'] / 1000:>9.1f}")

    from xterramind.planner import plan_area

    sizes = {side: plan_area(MILLION, region=side) for side in (256, 512)}
    per_region = {side: plan.tile_count() / plan.regions for side, plan in sizes.items()}
    print(f"\n(d) projection: {GPU_TILES_PER_S:,.0f} tiles/s per GPU (assumed), one region per {overhead * 1000:.1f} ms "
          f"through driver and scheduler (b); regions of 256 tokens hold {per_region[256]:.0f} tiles, of 512 "
          f"{per_region[512]:.0f}")
    print(f"{'GPUs':>6}{'tiles/s (256)':>15}{'tiles/s (512)':>15}{'decode cores/GPU':>18}{'write cores/GPU':>17}"
          f"{'1M km2 min':>12}{'10M km2 min':>13}")
    for gpus, small, large, decode, write, million, europe in projection(overhead, runs[0], per_region):
        print(f"{gpus:>6}{small:>15,.0f}{large:>15,.0f}{decode:>18.1f}{write:>17.1f}{million:>12.1f}{europe:>13.1f}")
    print("decode cores: 1 GB/s of decoded S2 per core (rule of thumb); write cores: this machine's zarr write time "
          "per byte, for TerraMind-B's float32 embeddings (442 KB per tile) at the GPU's rate")


if __name__ == "__main__":
    main()
