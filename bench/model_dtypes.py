"""Memories made in one model dtype, decoded in each: does a memory made in bfloat16 or with int8
weights give its text back in float32, and the other way round?

A memory is verified in the arithmetic it was made in, and memtok refuses to decode it in another
(the fingerprint records the dtype). This bench lifts that refusal on purpose, to measure what it
guards against: for each dtype, encode the same texts (exact count, median steps, wall time), then
decode every memory in every dtype and count how many give their text back.

    python bench/model_dtypes.py --limit 4 --dtypes float32,bfloat16,int8 \\
        --json docs/results/bench/model-dtypes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from common import report

from memtok import MemoryCodec
from memtok.format.header import sha256_text
from memtok.runs.sources import read_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_100.csv")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    ap.add_argument("-k", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    texts = read_source(args.data, limit=args.limit).texts
    dtypes = args.dtypes.split(",")
    codecs = {dt: MemoryCodec.from_pretrained(args.model, "cpu", dt) for dt in dtypes}
    made, rows = {}, []
    for dt, codec in codecs.items():
        began = time.perf_counter()
        made[dt] = codec.encode(texts, k=args.k, show_progress_bar=True)
        rows.append({"made in": dt, "exact": sum(m.exact for m in made[dt]), "texts": len(texts),
                     "median steps": statistics.median(m.steps for m in made[dt]),
                     "wall seconds": round(time.perf_counter() - began, 1)})
    for row in rows:
        for dt, codec in codecs.items():  # the fingerprint check lifted: the same vectors, other arithmetic
            mems = [dataclasses.replace(m, model_fingerprint=codec.lm.fingerprint) for m in made[row["made in"]]]
            back = codec.decode(mems, check=False)
            row[f"gives its text in {dt}"] = sum(sha256_text(t) == m.text_sha256 for t, m in zip(back, mems))
    report(rows, {"made in": lambda r: r["made in"], "exact when made": lambda r: f"{r['exact']}/{r['texts']}",
                  "median steps": lambda r: r["median steps"], "wall s": lambda r: r["wall seconds"],
                  **{f"decoded in {dt}": (lambda r, dt=dt: r[f"gives its text in {dt}"]) for dt in dtypes}}, args)


if __name__ == "__main__":
    main()
