"""Nearest-neighbour search at scale: index build time, query latency, recall@10 and size on disk.

    python -m benchmarks.retrieval [--count 1000000] [--dim 768]

The vectors are synthetic (no million real TerraMind embeddings exist here): unit vectors drawn around
10,000 random centres, the way embeddings of a landscape cluster by land cover. They are generated in
batches and never held twice. Ground truth is exact search over all of them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from xterramind.retrieval.index import VectorIndex, normalized

BATCH = 100_000


def batches(count: int, dim: int, seed: int = 0):
    centres = np.random.default_rng(seed).normal(size=(10_000, dim)).astype(np.float32)

    def generate():
        for start in range(0, count, BATCH):
            rng = np.random.default_rng((seed, start))
            size = min(BATCH, count - start)
            picked = centres[rng.integers(0, len(centres), size)]
            yield normalized(picked + 0.6 * rng.normal(size=(size, dim)).astype(np.float32))

    return generate


def exact_top(generate, queries: np.ndarray, k: int) -> np.ndarray:
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    offset = 0
    for batch in generate():
        scores = queries @ batch.T
        ids = np.broadcast_to(np.arange(offset, offset + len(batch)), scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
        offset += len(batch)
    return best_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nprobe", type=int, default=None, help="lists searched per query (default: a twentieth)")
    args = parser.parse_args()
    generate = batches(args.count, args.dim)
    rng = np.random.default_rng(1)
    first = next(generate())
    queries = normalized(first[rng.choice(len(first), args.queries, replace=False)]
                         + 0.05 * rng.normal(size=(args.queries, args.dim)).astype(np.float32))
    start = time.perf_counter()
    truth = exact_top(generate, queries, 10)
    exact_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        index = VectorIndex.build(generate, args.count, args.dim, Path(folder), "ivf", nprobe=args.nprobe)
        build = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(folder).iterdir())
        default, lists = index.nprobe, index.lists
        rows = []
        for nprobe in sorted({default // 2, default, default * 2}):
            index.nprobe = nprobe
            latencies, found = [], []
            for query in queries:
                start = time.perf_counter()
                found.append(index.search(query[None], 10)[1][0])
                latencies.append(time.perf_counter() - start)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found, strict=True)])
            rows.append((nprobe, np.percentile(latencies, 50) * 1000, np.percentile(latencies, 99) * 1000, recall))
    raw = args.count * args.dim * 4
    print(f"{args.count:,} vectors of dim {args.dim}, faiss IVF-SQ8 with {lists} lists, 2 cores, {args.queries} queries")
    print(f"build {build:.1f} s; index on disk {size / 1e6:.0f} MB ({size / raw:.2f} of float32); exact search "
          f"{1000 * exact_seconds / args.queries:.1f} ms per query")
    print(f"{'nprobe':>8}{'p50 ms':>10}{'p99 ms':>10}{'recall@10':>11}")
    for nprobe, p50, p99, recall in rows:
        print(f"{nprobe:>8}{p50:>10.2f}{p99:>10.2f}{recall:>11.3f}" + ("  (default)" if nprobe == default else ""))


if __name__ == "__main__":
    main()
