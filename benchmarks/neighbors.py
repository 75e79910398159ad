"""Embedding explorer speed: neighbour queries, 2-D projection, contextual vectors over CoNLL-2003.

Figures (targets on a CPU):
- query latency over the default model's whole vocabulary (~30k x 384, ``##`` pieces included):
  p50 < 5 ms, and p99;
- PCA projection of 10k words: < 5 s (UMAP too with --umap, when umap-learn is installed);
- contextual vectors for the CoNLL-2003 train split: wall time and peak memory (resident set
  size sampled while it runs; GPU memory on a GPU);
- comparing two 24k-word spaces (the static space and a rotated copy): wall time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/neighbors.py [--queries 1000] [--sentences N] [--umap]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from pathlib import Path

import psutil
import torch

DATA_DIR = Path(os.environ.get("FTKIT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def query_latency(queries: int) -> None:
    from ftkit.embeddings import load

    space = load("default", "static", subwords=True)
    words = random.Random(0).choices(space.words, k=queries)
    for word in words[:20]:  # warm-up: the index is built on first use
        space.neighbors(word, k=10)
    timings = []
    for word in words:
        started = time.perf_counter()
        space.neighbors(word, k=10)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(0.99 * (len(timings) - 1))]
    print(f"neighbour query, {len(space)} x {space.dim} static vocabulary, k=10, {queries} queries: "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p50 < 5 ms)")


def projection_time(umap: bool) -> None:
    from ftkit.embeddings import is_umap_available, load, project

    vectors = load("default", "static").top(10_000).vectors
    for method in ("pca", "umap") if umap else ("pca",):
        if method == "umap" and not is_umap_available():
            print("umap: umap-learn is not installed (pip install ftkit[umap])")
            continue
        started = time.perf_counter()
        project(vectors, method=method, seed=0)
        print(f"{method} projection of {len(vectors)} words: {time.perf_counter() - started:.2f} s (target < 5 s)")


def contextual_vectors(sentences: int | None) -> None:
    from ftkit.embeddings import load

    corpus = DATA_DIR / "conll2003" / "train.txt"
    process = psutil.Process()
    peak, done = [process.memory_info().rss], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    baseline = peak[0]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sampler.start()
    started = time.perf_counter()
    space = load("default", "contextual", corpus=corpus, max_sentences=sentences, cache=False)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    total = int(space.frequencies.sum())
    gpu = f", GPU peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if torch.cuda.is_available() else ""
    print(f"contextual vectors, CoNLL-2003 train ({sentences or 'all'} sentences, {total} words, {len(space)} types, "
          f"device {space.device}): {elapsed:.1f} s, peak RSS {max(peak) / 2**20:.0f} MiB "
          f"(+{(max(peak) - baseline) / 2**20:.0f} MiB over the {baseline / 2**20:.0f} MiB before){gpu}")


def comparison_time() -> None:
    from ftkit.embeddings import EmbeddingSpace, compare, load

    before = load("default", "static")
    rotation, _ = torch.linalg.qr(torch.randn(before.dim, before.dim, generator=torch.Generator().manual_seed(0)))
    after = EmbeddingSpace(before.words, before.vectors @ rotation, name="rotated")
    started = time.perf_counter()
    comparison = compare(before, after, k=10)
    print(f"compare {len(comparison.words)} words (static vs rotated copy): {time.perf_counter() - started:.1f} s; "
          f"min shared neighbours {comparison.overlap.min():.2f}, max shift {comparison.shift.max():.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000, help="neighbour queries to time")
    parser.add_argument("--sentences", type=int, default=None,
                        help="contextual: the first N train sentences (default all)")
    parser.add_argument("--umap", action="store_true", help="time a UMAP projection too")
    parser.add_argument("--skip-contextual", action="store_true",
                        help="leave out the contextual pass (minutes on a CPU)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")
    query_latency(args.queries)
    projection_time(args.umap)
    comparison_time()
    if not args.skip_contextual:
        contextual_vectors(args.sentences)


if __name__ == "__main__":
    main()
