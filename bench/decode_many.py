"""Decoding many memories: one at a time against `MemoryCodec.decode`'s batches, side by side.

`memtok decode STORE --all` and retrieval's decode-once-then-index read every memory of a store; one
at a time, greedy decoding reads every weight of the model once per token per memory. In batches
(`memtok.decode.greedy.greedy_many`) it reads them once per token for the whole batch, and each text is
still the one that memory gives alone. This times both on an eval folder's memories and checks
that they give the same texts.

    python bench/decode_many.py docs/results/raschka100-k1-first50 --limit 20 --batch-sizes 8,32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import folder_memories, write_json

from memtok import MemoryCodec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="an eval folder (its memories/ and run.json)")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    folder = Path(args.folder)
    mems = list(folder_memories(folder).values())[:args.limit]
    codec = MemoryCodec.from_pretrained(json.loads((folder / "run.json").read_text())["model"])
    began = time.perf_counter()
    alone = [codec.decode(m, check=False) for m in mems]
    rows = [{"batch size": 1, "seconds": round(time.perf_counter() - began, 2), "same texts": len(mems)}]
    for size in [int(b) for b in args.batch_sizes.split(",")]:
        began = time.perf_counter()
        texts = codec.decode(mems, check=False, batch_size=size, show_progress_bar=False)
        rows.append({"batch size": size, "seconds": round(time.perf_counter() - began, 2),
                     "same texts": sum(a == b for a, b in zip(alone, texts))})
    for r in rows:
        r["vs one at a time"] = round(rows[0]["seconds"] / r["seconds"], 2)
    segments = sum(max(1, len(m.segments)) for m in mems)
    print(f"{len(mems)} memories ({segments} segments) of {folder}")
    for r in rows:
        print(" | ".join(f"{k} {v}" for k, v in r.items()))
    if args.json:
        write_json(args.json, {"folder": str(folder), "memories": len(mems), "segments": segments, "rows": rows})


if __name__ == "__main__":
    main()
