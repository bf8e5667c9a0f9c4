"""Recipes side by side on the same texts, in one process: steps, time, exactness, ratios to `paper`.

Steps are the currency (each is one forward + backward of the frozen model); wall times are noisy
on a shared machine, so the figures to quote are the ratios measured here side by side.

    python bench/recipes.py --data ../shared/data/paper/raschka_chunks_100.csv --limit 20 \\
        --recipes paper@bos,kuratov,memtok
    python bench/recipes.py --data ../shared/data/paper/raschka_chunks_1000.csv --limit 10 \\
        --first-tokens 64 --recipes memtok
    python bench/recipes.py --limit 40 --recipes memtok --batch-sizes 1,8    # batched throughput

A recipe name followed by `@bos` runs that recipe's optimiser at memtok's layout (BOS before the
memory); `paper` alone is the faithful recipe (no BOS). Fields can be overridden to try a lever, as
on every memtok command: `memtok:lr=0.01:rank=64`, `memtok-sgd:lr=20.0`, `memtok:init=text`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from common import report

from memtok import MemoryCodec
from memtok.runs.sources import read_source
from memtok.settings.recipes import get_recipe


def resolve(name: str):
    """A recipe spec (`memtok.settings.recipes.parse_recipe`), `name@bos` short for `name:bos=true`."""
    head, _, rest = name.partition(":")
    base, _, variant = head.partition("@")
    spec = ":".join([base] + (["bos=true"] if variant == "bos" else []) + ([rest] if rest else []))
    return get_recipe(spec).replace(name=name)


def truncate(codec: MemoryCodec, texts: list[str], n: int) -> list[str]:
    return [codec.lm.detokenize(codec.lm.tokenize(t)[:n]) for t in texts]


def detected(codec: MemoryCodec, mems) -> dict:
    """What `memtok detect` says of these memories' vectors."""
    import torch

    from memtok.analysis.detect import detect

    findings = detect(codec.lm, torch.cat([codec.inputs(m.vectors, m.storage_dtype) for m in mems]))
    return {"vectors_flagged": f"{sum(not f.token_like for f in findings)}/{len(findings)}",
            "median_distance": round(statistics.median(f.distance for f in findings), 4),
            "median_norm_ratio": round(statistics.median(f.norm_ratio for f in findings), 3)}


def p90(xs):
    return sorted(xs)[max(0, round(0.9 * len(xs)) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_100.csv")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--first-tokens", type=int, default=None, help="cut each text to its first N tokens")
    ap.add_argument("--recipes", default="paper@bos,kuratov,memtok")
    ap.add_argument("--batch-sizes", default="1", help="comma-separated; each recipe runs at each")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("-k", type=int, default=1, help="memory vectors per text")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--detect", action="store_true", help="also run `memtok detect` on every memory: how many "
                                                          "vectors it flags, and their median distance")
    args = ap.parse_args()

    codec = MemoryCodec.from_pretrained(args.model)
    texts = read_source(args.data, limit=args.limit).texts
    if args.first_tokens:
        texts = truncate(codec, texts, args.first_tokens)
    rows = []
    for name in args.recipes.split(","):
        for bs in map(int, args.batch_sizes.split(",")):
            started = time.perf_counter()
            mems = codec.encode(texts, recipe=resolve(name), batch_size=bs, max_steps=args.max_steps,
                                k=args.k, show_progress_bar=True)
            wall = time.perf_counter() - started
            steps = [m.steps for m in mems]
            rows.append({"recipe": name, "k": args.k, "batch_size": bs, "texts": len(mems),
                         "exact": sum(m.exact for m in mems),
                         "mean_token_accuracy": round(statistics.fmean(m.token_accuracy for m in mems), 4),
                         "median_steps": statistics.median(steps), "p90_steps": p90(steps),
                         "median_seconds": round(statistics.median(m.seconds for m in mems), 2),
                         "wall_seconds": round(wall, 1), "texts_per_hour": round(3600 * len(mems) / wall, 1),
                         "median_tokens": statistics.median(m.n_tokens for m in mems),
                         "per_text": [{"tokens": m.n_tokens, "steps": m.steps, "exact": m.exact,
                                       "token_accuracy": round(m.token_accuracy, 4)} for m in mems],
                         **(detected(codec, mems) if args.detect else {})})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ref = next((r for r in rows if r["recipe"].startswith("paper")), rows[0])
    report(rows, {"recipe": lambda r: r["recipe"], "batch": lambda r: r["batch_size"],
                  "exact": lambda r: f"{r['exact']}/{r['texts']}",
                  "token accuracy": lambda r: r["mean_token_accuracy"], "median steps": lambda r: r["median_steps"],
                  "p90 steps": lambda r: r["p90_steps"], "median s/text": lambda r: r["median_seconds"],
                  "texts/hour": lambda r: r["texts_per_hour"],
                  f"steps vs {ref['recipe']}": lambda r: f"{r['median_steps'] / ref['median_steps']:.3f}",
                  f"s/text vs {ref['recipe']}": lambda r: f"{r['median_seconds'] / ref['median_seconds']:.3f}",
                  **({"flagged": lambda r: r["vectors_flagged"], "median distance": lambda r: r["median_distance"],
                      "median norm / token's": lambda r: r["median_norm_ratio"]} if args.detect else {})}, args)

if __name__ == "__main__":
    main()
