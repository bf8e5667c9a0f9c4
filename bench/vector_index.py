"""How long a vector search over many semantic memories takes: exact search against approximate
indexes, side by side in one run, on synthetic keys of the semantic subspace's size.

A semantic memory's key is its component in the semantic subspace (`memtok.start.semantic`, 64 numbers
for SmolLM2), normalised; a search ranks the store's keys by cosine with the query's code. The
keys here are random unit vectors (no clusters: the hard case for an approximate index), and each
query is one of them plus noise, so its true nearest key is known. Per store size and method: the
time to build the index, the median and 95th-percentile time of one query for its top 10, and
recall@10 against exact search. The query's code (one pass of the model over the query) is not in
these times: `bench/retrieval.py` times it. Threads: torch's and faiss's own defaults (OpenMP's,
`OMP_NUM_THREADS`), the same for every method.

    python bench/vector_index.py --sizes 1000,100000,1000000 --json docs/results/bench/vector-index.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import report

from memtok.store.search import best_cosines, top

TOP = 10


def keys(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_torch(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """One matrix-vector product and a top-k: the truth every method is held to."""
    table = torch.from_numpy(x)

    def search(q: np.ndarray) -> np.ndarray:
        return torch.topk(table @ torch.from_numpy(q), min(TOP, len(table))).indices.numpy()
    return search


def memtok_exact(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """What `memtok search --method vector` does over a store's keys: every key's cosine, each
    memory's best segment (here one key per memory), the top 10."""
    table, owners = torch.from_numpy(x), torch.arange(len(x))
    return lambda q: np.array([j for j, _ in top(best_cosines(owners, table, torch.from_numpy(q), len(x)), TOP)])


def faiss_flat(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return lambda q: index.search(q[None], TOP)[1][0]


def faiss_hnsw(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction, index.hnsw.efSearch = 64, 64
    index.add(x)
    return lambda q: index.search(q[None], TOP)[1][0]


def usearch_hnsw(x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from usearch.index import Index

    index = Index(ndim=x.shape[1], metric="cos", dtype="f32", connectivity=32, expansion_add=64, expansion_search=64)
    index.add(np.arange(len(x)), x)
    return lambda q: index.search(q, TOP).keys


METHODS = {"memtok (exact)": memtok_exact, "exact (torch)": exact_torch, "faiss flat (exact)": faiss_flat, "faiss HNSW": faiss_hnsw,
           "usearch HNSW": usearch_hnsw}


def measure(n: int, dim: int, queries: int, methods: list[str], seed: int = 0) -> list[dict]:
    x = keys(n, dim, seed)
    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(n, queries, replace=n < queries)
    qs = x[picked] + rng.standard_normal((queries, dim), dtype=np.float32) * 0.05
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    truth = [set(exact_torch(x)(q).tolist()) for q in qs]
    rows = []
    for name in methods:
        began = time.perf_counter()
        search = METHODS[name](x)
        built = time.perf_counter() - began
        times, found = [], 0
        for q, want in zip(qs, truth):
            began = time.perf_counter()
            got = search(q)
            times.append(time.perf_counter() - began)
            found += len(want & set(np.asarray(got).tolist()))
        times.sort()
        rows.append({"keys": n, "method": name, "build_s": round(built, 3),
                     "median_ms": round(1000 * statistics.median(times), 3),
                     "p95_ms": round(1000 * times[int(0.95 * (len(times) - 1))], 3),
                     "recall_at_10": round(found / (TOP * len(qs)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,100000,1000000")
    ap.add_argument("--dim", type=int, default=64, help="the semantic subspace's rank (SmolLM2's: 64)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    rows = [r for n in map(int, args.sizes.split(",")) for r in measure(n, args.dim, args.queries,
                                                                       args.methods.split(","))]
    columns = {c: (lambda r, c=c: r[c]) for c in ("keys", "method", "build_s", "median_ms", "p95_ms", "recall_at_10")}
    report(rows, columns, args)


if __name__ == "__main__":
    main()
