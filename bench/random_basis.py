"""Fewer numbers per vector: a seeded random basis of rank r, only the r coordinates stored (and
quantised), against memtok's framed levels of all d numbers. A lever for `compact=True` that did not
win (docs/results/README.md, compact memories); kept so that the figure can be made again.

    python bench/random_basis.py --limit 1 --configs "32:int8:128,32:int4:256,32:int4:0"

Each config is `segment tokens:levels:rank`, rank 0 meaning memtok's own framed dtype. The basis
is d x r with entries +-1/sqrt(r) from a fixed seed; the coordinates are learned through the same
rank-32 over-parameterisation as the default (u = a @ B.T, both learned) and quantised through
the rounding with one float16 scale per vector (int8: absmax / 127; int4: memtok's int4 step).
One vector per segment, at most --max-steps steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import torch
from common import add_model_options, report

from memtok import EncodeConfig, MemoryCodec
from memtok.model.precision import quantise as framed_levels
from memtok.runs.sources import read_source


def quantise(u: torch.Tensor, levels: str) -> torch.Tensor:
    """int8: absmax / 127 with a float16 scale; the framed dtypes: memtok's own levels."""
    if levels != "int8":
        return framed_levels(u, levels)
    scale = (u.abs().amax(-1, keepdim=True) / 127).half().float()
    return scale * torch.round(u / scale).clamp(-127, 127)


class BasisVectors:
    """`centre + spread * (P @ q(u))` with P a fixed +-1 basis [d, r] and u = a @ B.T learned."""

    def __init__(self, k: int, d: int, frame, rank: int, levels: str) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.basis = (torch.randint(0, 2, (d, rank), generator=gen).float() * 2 - 1) / rank ** 0.5
        self.a = torch.randn(k, 32, generator=gen).requires_grad_(True)
        self.b = (torch.randn(rank, 32, generator=gen) / 32 ** 0.5).requires_grad_(True)
        self.params, self.frame, self.levels = [self.a, self.b], frame, levels

    def vectors(self) -> torch.Tensor:
        u = self.a @ self.b.T
        saved = u + (quantise(u.detach(), self.levels) - u).detach()
        return self.frame.inputs(saved @ self.basis.T)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_1000.csv")
    ap.add_argument("--limit", type=int, default=1)
    ap.add_argument("--configs", required=True)
    ap.add_argument("--max-steps", type=int, default=600)
    ap.add_argument("--json", default=None, help="write the rows here too")
    add_model_options(ap)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    texts = read_source(args.data, limit=args.limit).texts
    rows = []
    for spec in args.configs.split(","):
        tokens, levels, rank = spec.split(":")
        rank = int(rank)
        config = EncodeConfig(k=1, segment_tokens=int(tokens), storage="float32" if rank else levels,
                              max_steps=args.max_steps, batch_size=16, max_batch_tokens=2048)
        settings = codec.resolve(config)
        if rank:  # the basis is the parameters; the slot stores its float32 output as it is
            settings = dataclasses.replace(settings, make_vectors=lambda lm, recipe, start, k, *_, r=rank, q=levels:
                                           BasisVectors(k, lm.hidden_size, lm.frame, r, q))
        started = time.perf_counter()
        mems = codec.encode(texts, settings, show_progress_bar=True)
        per_number = {"int8": 8, "int4": 4}.get(levels, 1.6 if levels == "ternary" else 1)
        vector_bytes = (rank * per_number / 8 + 2) if rank else mems[0].nbytes / mems[0].k
        payload = [m.k * vector_bytes + m.payload_bytes - m.nbytes for m in mems]
        rows.append({"config": spec, "exact": sum(m.exact for m in mems), "texts": len(mems),
                     "segment_steps": sorted(s["steps"] for m in mems for s in m.segments),
                     "payload_bytes": statistics.median(payload),
                     "to_zstd": round(statistics.median(p / m.text_sizes["zstd"] for p, m in zip(payload, mems)), 2),
                     "wall_seconds": round(time.perf_counter() - started, 1)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report(rows, {"config": lambda r: r["config"], "exact": lambda r: f"{r['exact']}/{r['texts']}",
                  "steps per segment": lambda r: r["segment_steps"], "payload bytes": lambda r: r["payload_bytes"],
                  "payload / zstd": lambda r: r["to_zstd"], "wall (s)": lambda r: r["wall_seconds"]}, args)


if __name__ == "__main__":
    main()
