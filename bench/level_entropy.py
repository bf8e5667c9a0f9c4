"""Entropy coding of the stored levels, as a lever for `compact=True`: how many bytes the levels of
a run's low-bit memories would take under an ideal coder with one fixed table of level
frequencies (made from all the run's memories, shared by them, so it costs no bytes per text),
against the packed bytes they take now. No model needed.

    python bench/level_entropy.py docs/results/raschka1000-compact docs/results/chunks-compact
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter

import torch
from common import folder_memories

from memtok import Memory
from memtok.model.dtypes import framed
from memtok.model.precision import pack


def levels(mem: Memory) -> list[int]:
    """The integer level of every stored number."""
    scale = pack(mem.vectors, mem.storage_dtype)["scale"].float()[:, None]
    return torch.round(mem.vectors / scale).long().flatten().tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="eval output folders whose memories/ hold low-bit memories")
    args = ap.parse_args()
    for run in args.runs:
        mems = [m for m in folder_memories(run).values() if framed(m.storage_dtype)]
        if not mems:
            print(f"{run}: no low-bit memories", file=sys.stderr)
            continue
        per_mem = [levels(m) for m in mems]
        table = Counter(q for qs in per_mem for q in qs)
        total = sum(table.values())
        bits = {q: -math.log2(n / total) for q, n in table.items()}
        coded = [math.ceil(sum(bits[q] for q in qs) / 8) for qs in per_mem]
        packed = [m.nbytes - 2 * m.k for m in mems]  # the levels' bytes, scales aside
        ratio = sum(coded) / sum(packed)
        print(f"{run}: {len(mems)} {mems[0].storage_dtype} memories; levels packed {sum(packed)} bytes, ideally "
              f"coded with one shared table {sum(coded)} bytes ({ratio:.3f}x); "
              f"{sum(bits[q] * n for q, n in table.items()) / total:.3f} bits per level; "
              f"table {dict(sorted(table.items()))}")


if __name__ == "__main__":
    main()
