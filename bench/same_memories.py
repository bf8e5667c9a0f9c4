"""Does a change leave memtok's memories as they were? A few encodes, recorded bit for bit.

A refactor must not move a figure: the same texts under the same settings must give the same
vectors after the same number of steps. This encodes a handful of texts on the embedded SmolLM2-135M
(the default plan from its learned start, one vector with `memtok`, and a compact memory) and writes
each memory's vector sha256, steps per segment, recipe fields and start. `--check FILE` compares with an
earlier record and exits 1 on the first difference.

    python bench/same_memories.py --write docs/results/bench/same-memories.json   # before a change
    python bench/same_memories.py --check docs/results/bench/same-memories.json   # after it

A record holds for the machine that wrote it: the same code on another machine of this kind gave the
same steps with other vector bits (all 6), so write the record before the change where you check it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import torch
from common import add_model_options, write_json

from memtok import MemoryCodec

TEXTS = ["Memory tokens turn a text into a vector and back.",
         "Las redes neuronales aprenden representaciones de los datos."]
CASES = {"default": {}, "k1": {"k": 1, "recipe": "memtok"}, "compact": {"compact": True}}


def record(codec: MemoryCodec, max_steps: int | None = None) -> dict:
    out = {}
    for case, options in CASES.items():
        torch.manual_seed(0)
        capped = {} if max_steps is None else {"max_steps": max_steps}
        for i, mem in enumerate(codec.encode(TEXTS, show_progress_bar=False, **options, **capped)):
            out[f"{case}/{i}"] = {"vectors_sha256": hashlib.sha256(mem.vectors.float().numpy().tobytes()).hexdigest(),
                                  "steps": [s["steps"] for s in mem.segments], "exact": mem.exact,
                                  "recipe": {k: v for k, v in mem.recipe.items() if k != "name"},  # a name is a label
                                  "start": mem.start}
            print(case, i, out[f"{case}/{i}"], file=sys.stderr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", help="record the memories to this JSON file")
    group.add_argument("--check", help="compare the memories with this JSON file")
    add_model_options(ap)
    ap.add_argument("--max-steps", type=int, default=None, help="a cap on every case's steps (a quick run)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine of this kind
    now = record(MemoryCodec.from_pretrained(args.model, device="cpu"), args.max_steps)
    if args.write:
        write_json(args.write, {"memories": now})
        return 0
    with open(args.check) as f:
        before = json.load(f)["memories"]
    differ = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    for k in differ:
        print(f"{k}: before {before.get(k)}, now {now.get(k)}")
    print(f"{len(now) - len(differ)} of {len(now)} memories the same bit for bit")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
