"""A memory's size beside its text's, per eval folder, for the rows every given folder has: texts,
exact, median payload bytes, bits per byte of text, payload / zstd, payload / the model's bound,
and steps per text. No model needed.

    python bench/size_table.py docs/results/raschka1000-plan docs/results/raschka1000-compact

Folders made before memtok recorded payloads and bounds get them from their records: the payload
from the vector bytes and segments (`memtok.format.sizes.payload_bytes`), the bound from another given
folder's record of the same text (the bound is the text's, whatever the memory).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from common import report

from memtok.format.sizes import payload_bytes


def records(folder: str) -> dict[int, dict]:
    lines = Path(folder, "results.jsonl").read_text().splitlines()
    return {r["index"]: r for r in map(json.loads, lines) if not r.get("failed")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--json", default=None, help="write the rows here too")
    args = ap.parse_args()
    runs = {f: records(f) for f in args.folders}
    common = sorted(set.intersection(*(set(r) for r in runs.values())))
    bound = {i: next(r[i]["entropy_bits"] for r in runs.values() if r[i].get("entropy_bits")) for i in common}
    rows = []
    for folder, recs in runs.items():
        rs = [recs[i] for i in common]
        pay = [r.get("payload_bytes") or payload_bytes(r["memory_bytes"], len(r["segment_k"])) for r in rs]
        utf8 = [r.get("utf8_bytes") or r["text_utf8_bytes"] for r in rs]
        zstd = [r.get("zstd_bytes") or r["text_zstd_bytes"] for r in rs]
        rows.append({"folder": Path(folder).name, "texts": len(rs), "exact": sum(r["exact"] for r in rs),
                     "dtype": rs[0].get("dtype", "float32"),
                     "median_payload_bytes": statistics.median(pay),
                     "median_zstd_bytes": statistics.median(zstd),
                     "median_bound_bytes": statistics.median(math.ceil(bound[i] / 8) for i in common),
                     "median_bits_per_byte": round(statistics.median(8 * p / u for p, u in zip(pay, utf8)), 2),
                     "median_to_zstd": round(statistics.median(p / z for p, z in zip(pay, zstd)), 2),
                     "median_to_bound": round(statistics.median(8 * p / bound[i] for p, i in zip(pay, common)), 2),
                     "median_steps": statistics.median(r["steps"] for r in rs)})
    report(rows, {"run": lambda r: r["folder"], "storage": lambda r: r["dtype"],
                  "exact": lambda r: f"{r['exact']}/{r['texts']}",
                  "payload bytes (median)": lambda r: r["median_payload_bytes"],
                  "zstd bytes": lambda r: r["median_zstd_bytes"], "bound bytes": lambda r: r["median_bound_bytes"],
                  "bits per byte": lambda r: r["median_bits_per_byte"], "payload / zstd": lambda r: r["median_to_zstd"],
                  "payload / bound": lambda r: r["median_to_bound"], "steps per text": lambda r: r["median_steps"]},
           args)


if __name__ == "__main__":
    main()
