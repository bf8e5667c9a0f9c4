"""Memory-based retrieval side by side in one run: which memory holds a passage, found without the texts.

Queries from each text, built by rule (no model): an exact span from inside it (up to 12 tokens,
from a quarter of the way in), the same span with two words swapped for words of other texts, and
a question naming the span's three longest words. Methods, each timed per query:

- likelihood: the model's log-probability of each query token after each memory
  (`memtok.store.search.token_logprobs`, one pass per query), scored every way in `SCORINGS` (the
  mean, the mean without the first token, the mean of tokens standardised across the store);
- vector, when the memories were made with `--semantic`: the query's code against each memory's
  component in the semantic subspace (`memtok.start.semantic`); the same, its top 10 ordered again by
  the likelihood method (two stages); and beside them the same teacher on the texts themselves
  (what keeping the texts would buy with that embedder);
- decode + BM25: every memory decoded once (that time shared among the queries), then BM25;
- BM25 and all-MiniLM-L6-v2 on the texts themselves (what having the texts buys), and MiniLM
  projected to the semantic subspace's rank (what a memory taught by MiniLM would hold).

    python bench/retrieval.py docs/results/raschka100-k1-first50 docs/results/raschka100-k1-rows50-100 \
        --json docs/results/bench/retrieval-raschka100-first100.json
    python bench/retrieval.py runs/r100-semantic --scale "" --json docs/results/bench/retrieval-semantic-r100.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import KINDS, folder_memories, minilm, queries, report, write_json

from memtok import MemoryCodec
from memtok.runs.sources import read_source
from memtok.start.semantic import SemanticSpace
from memtok.store.search import SCORINGS, best_per_memory, token_logprobs, vector_scores

TOP_K = 10  # what a two-stage search reads again


def recall(ranked: list[int], want: int, n: int) -> int:
    return int(want in ranked[:n])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="eval folders with memories/ of one data file (their run.json "
                                                 "names it), searched as one store")
    ap.add_argument("--query-limit", type=int, default=None, help="queries of each kind for every method, from "
                                                                  "texts spread evenly through the store (which "
                                                                  "stays whole)")
    ap.add_argument("--scale", default="100,1000", help="store sizes at which to time the likelihood method")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    mems, texts, runs = {}, {}, [json.loads((Path(f) / "run.json").read_text()) for f in args.folders]
    if len({(r["data_sha256"], r["model_fingerprint"]) for r in runs}) > 1:
        raise SystemExit("the folders differ in data or model")
    for folder, run in zip(map(Path, args.folders), runs):
        source = read_source(run["data"], rows=run.get("rows"))
        for i, mem in folder_memories(folder).items():
            mems[i], texts[i] = mem, source.texts[i - source.first]
    run = runs[0]
    codec = MemoryCodec.from_pretrained(run["model"])
    order = sorted(mems)
    memories = [mems[i] for i in order]
    asked = order if args.query_limit is None else \
        sorted({order[j * len(order) // args.query_limit] for j in range(min(args.query_limit, len(order)))})
    qs = queries(codec, {i: texts[i] for i in asked}, words_from=texts.values())

    import bm25s

    def bm25_ranker(corpus: list[str]):
        index = bm25s.BM25()
        index.index(bm25s.tokenize(corpus, show_progress=False), show_progress=False)

        def rank(q: str) -> list[int]:
            docs, _ = index.retrieve(bm25s.tokenize([q], show_progress=False), k=len(corpus), show_progress=False)
            return [order[j] for j in docs[0].tolist()]
        return rank

    started = time.perf_counter()
    decoded = codec.decode(memories, check=False)
    decode_seconds = time.perf_counter() - started
    embedder = minilm()
    doc_vectors = embedder.encode([texts[i] for i in order], convert_to_tensor=True, show_progress_bar=False)

    def by_scores(scores: list[float]) -> list[int]:
        return [order[j] for j in sorted(range(len(order)), key=lambda j: -scores[j])]

    def minilm_rank(q: str) -> list[int]:
        from sentence_transformers import util

        return by_scores(util.cos_sim(embedder.encode(q, convert_to_tensor=True), doc_vectors)[0].tolist())

    space = SemanticSpace.of(codec.lm)
    # MiniLM as the teacher would give a memory this code: its embedding, randomly projected to r numbers
    to_code = torch.randn(space.rank, doc_vectors.shape[1], generator=torch.Generator().manual_seed(0))

    def minilm_projected(q: str) -> list[int]:
        code = to_code @ embedder.encode(q, convert_to_tensor=True).cpu()
        return by_scores(torch.nn.functional.cosine_similarity(doc_vectors.cpu() @ to_code.T, code[None]).tolist())

    passes: dict[str, tuple] = {}  # query -> (owners, per-token log-probabilities)
    logp_seconds: dict[str, float] = {}

    def likelihood(scoring: str):
        def rank(q: str) -> list[int]:
            if q not in passes:  # one pass per query, read by every scoring
                began = time.perf_counter()
                passes[q] = token_logprobs(codec, memories, q)
                logp_seconds[q] = time.perf_counter() - began
            owners, logp = passes[q]
            return by_scores(best_per_memory(owners, SCORINGS[scoring](logp), len(memories)))
        return rank

    text_codes = space.codes(codec.lm, [codec.lm.tokenize(texts[i]) for i in order])

    def teacher_on_texts(q: str) -> list[int]:
        code = space.codes(codec.lm, [codec.lm.tokenize(q)])[0]
        return by_scores(torch.nn.functional.cosine_similarity(text_codes, code[None], dim=1).tolist())

    def two_stage(q: str) -> list[int]:
        """The vector search's top 10, ordered again by the likelihood method (skip1), whose pass
        reads those 10 memories alone."""
        first = by_scores(vector_scores(codec, memories, q))
        owners, logp = token_logprobs(codec, [mems[i] for i in first[:TOP_K]], q)
        again = best_per_memory(owners, SCORINGS["skip1"](logp), TOP_K)
        return [first[j] for j in sorted(range(TOP_K), key=lambda j: -again[j])] + first[TOP_K:]

    semantic = {"vector (semantic memories)": lambda q: by_scores(vector_scores(codec, memories, q)),
                f"vector, then likelihood on its top {TOP_K}": two_stage,
                "the same teacher on texts": teacher_on_texts} if all(m.semantic for m in memories) else {}
    methods = {
        **{f"likelihood {name}": likelihood(name) for name in SCORINGS},
        **semantic,
        "decode + BM25": bm25_ranker(decoded),
        "BM25 on texts": bm25_ranker([texts[i] for i in order]),
        "MiniLM on texts": minilm_rank,
        f"MiniLM on texts, projected to {space.rank}": minilm_projected,
    }
    rows = []
    for name, rank in methods.items():
        for kind in KINDS:
            mine = [q for q in qs if q[0] == kind]
            began = time.perf_counter()
            ranked = [(rank(q), i) for _, i, q in mine]
            per_query = (time.perf_counter() - began) / len(mine)
            if name.startswith("likelihood"):  # the pass's time, whichever scoring ran it first
                per_query = statistics.fmean(logp_seconds[q] for _, _, q in mine)
            if name == "decode + BM25":
                per_query += decode_seconds / len(mine) / len(KINDS)
            rows.append({"method": name, "queries": kind, "n": len(mine),
                         "recall@1": round(statistics.fmean(recall(r, i, 1) for r, i in ranked), 3),
                         "recall@5": round(statistics.fmean(recall(r, i, 5) for r, i in ranked), 3),
                         "seconds per query": round(per_query, 3)})
    scale = []
    for size in [int(n) for n in args.scale.split(",") if n]:
        many = (memories * (size // len(memories) + 1))[:size]
        began = time.perf_counter()
        token_logprobs(codec, many, qs[0][2])
        scale.append({"memories": size, "seconds per query": round(time.perf_counter() - began, 3)})
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)
    print(json.dumps({"scale": scale, "decode_seconds": round(decode_seconds, 2), "memories": len(memories),
                      "segments": sum(max(1, len(m.segments)) for m in memories)}))
    if args.json:
        write_json(args.json, {**json.loads(Path(args.json).read_text()), "scale": scale,
                               "decode_seconds": round(decode_seconds, 2), "examples": qs[:6]})


if __name__ == "__main__":
    main()
