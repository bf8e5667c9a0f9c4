"""Where encoding time goes: the frozen model's forward and backward passes versus everything else.

    python bench/profile_encode.py --limit 8 --batch-size 8 --max-steps 60
    python bench/profile_encode.py --model DIR --device cuda --limit 20 --batch-size 20 --max-steps 50

Wraps the model's forward and `Tensor.backward` with timers while `MemoryCodec.encode` runs and
splits the wall time into: forward passes of the optimisation (grad enabled), backward passes,
greedy verification (forward passes without grad), and the rest (memtok's own bookkeeping:
building inputs, loss, margins, optimiser updates, progress). On a GPU each timed call waits for
the device before and after, so its kernels count where they were launched.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import defaultdict

import torch

from memtok import MemoryCodec
from memtok.runs.sources import read_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_100.csv")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model, args.device)
    sync = torch.cuda.synchronize if codec.lm.device.type == "cuda" else (lambda: None)
    texts = read_source(args.data, limit=args.limit).texts
    codec.encode(texts[:1], max_steps=2)  # warm-up: first-call allocations are not the steady state

    spent: dict[str, float] = defaultdict(float)
    model = codec.lm.model
    forward, backward = model.forward, torch.Tensor.backward

    @functools.wraps(forward)  # decoding inspects the signature to name its cache argument
    def timed_forward(*a, **kw):
        sync()
        t = time.perf_counter()
        out = forward(*a, **kw)
        sync()
        spent["forward (optimisation)" if torch.is_grad_enabled() else "greedy verification"] += time.perf_counter() - t
        return out

    def timed_backward(self, *a, **kw):
        sync()
        t = time.perf_counter()
        backward(self, *a, **kw)
        sync()
        spent["backward"] += time.perf_counter() - t

    model.forward, torch.Tensor.backward = timed_forward, timed_backward
    try:
        started = time.perf_counter()
        mems = codec.encode(texts, batch_size=args.batch_size, max_steps=args.max_steps)
        total = time.perf_counter() - started
    finally:
        model.forward, torch.Tensor.backward = forward, backward
    spent["everything else"] = total - sum(spent.values())
    print(f"{len(mems)} texts, {sum(m.steps for m in mems)} text-steps, batch size {args.batch_size}")
    for name, t in [*spent.items(), ("total", total)]:
        print(f"{name:<24} {t:8.2f} s  {100 * t / total:5.1f} %")


if __name__ == "__main__":
    main()
