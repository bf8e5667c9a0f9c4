"""How far batched greedy decoding's logits drift from one-by-one decoding: the evidence behind
`memtok.decode.greedy.SAFE_MARGIN`.

A batched verdict stands only where every greedy choice won by at least SAFE_MARGIN logits, so the
margin must dwarf the largest difference between the logits of a row decoded in a batch and the
same row decoded alone. This measures that difference as memtok's verification computes it: the
context [BOS, memory] in one pass with a KV cache, then one token at a time, at batch sizes 1-64,
at each thread count, with the alone run's tokens fed to both (so positions line up). Memories are
the mean input embedding plus seeded noise: the numerics, not exactness, are measured.

    python bench/batched_vs_single.py                         # embedded model, threads 1,2
    python bench/batched_vs_single.py --model-dtype bfloat16 --json docs/results/bench/batched-vs-single-bf16.json
    python bench/batched_vs_single.py --device cuda --random-weights   # a GPU, SmolLM2's shape
    python bench/batched_vs_single.py --device cuda --random-weights --shape llama-3.1-8b --model-dtype bfloat16

`--check` (make gpu-check) exits 1 when float32 weights drift by SAFE_MARGIN or more: batched
verdicts would then not be safe. In 16 bits memtok verifies every memory alone, so there the drift
is measured, not judged.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import SHAPES, add_model_options, random_lm, write_json

from memtok.decode.greedy import SAFE_MARGIN, greedy
from memtok.model.decoding import extend, prefill
from memtok.model.dtypes import MODEL_DTYPES
from memtok.model.layout import Layout
from memtok.model.loading import load
from memtok.model.model import FrozenLM


@torch.no_grad()
def forced_logits(lm: FrozenLM, layout: Layout, memories: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] of the cached decoding loop of `memtok.decode.greedy.greedy_batch`, fed `ids` [B, T]."""
    context = torch.stack([layout.inputs(lm, m) for m in memories])
    out = prefill(lm, context)
    logits = [out.logits[:, -1].float()]
    for t in range(ids.shape[1] - 1):
        out = extend(lm, ids[:, t:t + 1], out)
        logits.append(out.logits[:, -1].float())
    return torch.stack(logits, 1)


def margins(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--threads", default="1,2", help="torch CPU thread counts to try")
    ap.add_argument("--tokens", type=int, default=32, help="decoding steps per memory")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--random-weights", action="store_true", help="random weights in the shape of --shape")
    ap.add_argument("--shape", default="smollm2-135m", choices=list(SHAPES))
    ap.add_argument("--model-dtype", default="float32", choices=list(MODEL_DTYPES))
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--check", action="store_true", help="exit 1 if float32 drifts by SAFE_MARGIN or more")
    add_model_options(ap)
    args = ap.parse_args()
    lm = random_lm(args.shape, args.device, args.model_dtype) if args.random_weights else \
        load(args.model, args.device, args.model_dtype)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    layout = Layout.build(lm, "{memory}", 1, bos=True)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(max(sizes), 1, lm.hidden_size, generator=gen) * lm.embedding_std
    memories = (lm.embedding_mean.float().cpu() + noise).to(lm.device, lm.embedding_mean.dtype)
    threads = [int(t) for t in args.threads.split(",")] if args.device == "cpu" else [torch.get_num_threads()]
    print(f"model {lm.name} on {args.device} in {args.model_dtype}; SAFE_MARGIN {SAFE_MARGIN}; "
          f"{args.tokens} tokens per memory\n")
    print("| threads | batch | largest logit difference | largest margin difference | smallest margin seen | s |")
    print("|---|---|---|---|---|---|")
    worst, rows = 0.0, []
    for n in threads:
        torch.set_num_threads(n)
        alone_ids = []  # each memory's own greedy decoding (memtok's), padded with EOS: the tokens to feed
        for m in memories:
            ids = greedy(lm, layout, m, args.tokens)
            alone_ids.append(torch.tensor(ids + [lm.eos_id] * (args.tokens - len(ids)), device=lm.device))
        alone = [forced_logits(lm, layout, m[None], ids[None])[0] for m, ids in zip(memories, alone_ids)]
        for b in sizes:
            started = time.perf_counter()
            batched = forced_logits(lm, layout, memories[:b], torch.stack(alone_ids[:b]))
            ref = torch.stack(alone[:b])
            diff = float((batched - ref).abs().max())
            mdiff = float((margins(batched) - margins(ref)).abs().max())
            worst = max(worst, diff)
            rows.append({"threads": n, "batch": b, "logit_diff": diff, "margin_diff": mdiff,
                         "smallest_margin": float(margins(ref).min()),
                         "largest_logit": float(ref.abs().max())})
            print(f"| {n} | {b} | {diff:.3g} | {mdiff:.3g} | {float(margins(ref).min()):.3g} | "
                  f"{time.perf_counter() - started:.1f} |", flush=True)
    print(f"\nlargest logit difference {worst:.3g}: SAFE_MARGIN is {SAFE_MARGIN / worst:.0f}x it" if worst else
          "\nno difference at all")
    if args.json:
        write_json(args.json, {"args": vars(args), "rows": rows})
    if args.check and args.model_dtype == "float32" and worst >= SAFE_MARGIN:
        print(f"FAIL: float32 batched logits drift by {worst:.3g}, not below SAFE_MARGIN {SAFE_MARGIN}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
