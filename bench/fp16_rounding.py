"""Do float32 memories survive plain float16 rounding? Round every memory of a store (no repair,
no re-optimisation) and decode it greedily: the share still exact says how often `--dtype float16`
gets its halved bytes for free, and how often it needs the repair it does.

    python bench/fp16_rounding.py STORE [--dtype float16]
"""

from __future__ import annotations

import argparse

from memtok import MemoryCodec
from memtok.codec import sha256_text
from memtok.storage import rounded
from memtok.store import MemoryStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--dtype", default="float16")
    args = ap.parse_args()
    store = MemoryStore.open(args.store)
    codec = MemoryCodec.from_pretrained(store.info["model"])
    checked = kept = 0
    for mid in store:
        if store.record(mid)["status"] != "exact":
            continue
        mem = store[mid]
        mem.vectors = rounded(mem.vectors, args.dtype)
        checked += 1
        kept += sha256_text(codec.decode(mem)) == mem.text_sha256
    print(f"{kept}/{checked} exact float32 memories still decode exactly after {args.dtype} rounding")


if __name__ == "__main__":
    main()
