"""Segment length against vectors per segment and storage dtype, side by side on the same texts in one
process: what `k="plan"` should cut long texts into, and what `compact=True` should store.

    python bench/segments.py --data ../shared/data/paper/raschka_chunks_1000.csv --limit 3 \
        --configs "k=1:segment_tokens=32,k=1:segment_tokens=16,k=2:segment_tokens=32"

Each config is `EncodeConfig` fields as `name=value` pairs joined by `:`, and recipe fields as
`recipe.name=value` (on the default recipe: `recipe.grow_tokens=16`); every row reports the
texts exact, vectors per text, segment-steps per text (each segment's steps, summed), and the
wall time, with ratios to the first config, and each memory's payload beside its text's zstd size
(medians over the texts).

    python bench/segments.py --limit 1 --configs \
        "k=1:segment_tokens=32:storage=int4,k=1:segment_tokens=64:storage=int4,k=1:segment_tokens=32:storage=ternary"
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time

from common import report

from memtok import EncodeConfig, MemoryCodec
from memtok.runs.sources import read_source
from memtok.settings.recipes import DEFAULT_RECIPE, get_recipe


def parse(spec: str) -> EncodeConfig:
    fields = {k: ast.literal_eval(v) if v[:1].isdigit() or v in ("True", "False") else v
              for k, v in (part.split("=", 1) for part in spec.split(":"))}
    recipe = {k.removeprefix("recipe."): fields.pop(k) for k in list(fields) if k.startswith("recipe.")}
    return EncodeConfig(recipe=get_recipe(DEFAULT_RECIPE).replace(**recipe), **fields)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_1000.csv")
    ap.add_argument("--limit", type=int, default=3)
    ap.add_argument("--configs", required=True, help="comma-separated; see above")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None, help="write the rows here too")
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    texts = read_source(args.data, limit=args.limit).texts
    rows = []
    for spec in args.configs.split(","):
        config = parse(spec).replace(batch_size=args.batch_size)
        started = time.perf_counter()
        mems = codec.encode(texts, config, show_progress_bar=True)
        wall = time.perf_counter() - started
        rows.append({"config": spec, "texts": len(mems), "exact": sum(m.exact for m in mems),
                     "segments": sum(len(m.segments) or 1 for m in mems),
                     "median_vectors": statistics.median(m.k for m in mems),
                     "median_steps": statistics.median(m.steps for m in mems),
                     "total_steps": sum(m.steps for m in mems), "wall_seconds": round(wall, 1),
                     "median_payload_bytes": statistics.median(m.payload_bytes for m in mems),
                     "median_to_zstd": statistics.median(m.sizes()["to_zstd"] for m in mems),
                     "median_to_entropy": statistics.median(m.sizes()["to_entropy"] for m in mems)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    first = rows[0]
    report(rows, {"config": lambda r: r["config"], "exact": lambda r: f"{r['exact']}/{r['texts']}",
                  "segments": lambda r: r["segments"], "vectors per text (median)": lambda r: r["median_vectors"],
                  "segment-steps per text (median)": lambda r: r["median_steps"], "all steps": lambda r: r["total_steps"],
                  "wall (s)": lambda r: r["wall_seconds"],
                  "steps ratio": lambda r: f"{r['total_steps'] / first['total_steps']:.2f}",
                  "wall ratio": lambda r: f"{r['wall_seconds'] / first['wall_seconds']:.2f}",
                  "payload bytes (median)": lambda r: r["median_payload_bytes"],
                  "payload / zstd": lambda r: r["median_to_zstd"],
                  "payload / model bound": lambda r: r["median_to_entropy"]}, args)

if __name__ == "__main__":
    main()
