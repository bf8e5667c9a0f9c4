"""What bf16 would buy on this CPU: one optimisation step (forward + backward to the inputs) of the
frozen model in float32, under bf16 autocast, and with bf16 weights, side by side.

    python bench/bf16_step.py --batch-size 20 --positions 28

A step here is what `memtok.encode.optimise` runs: a batch of input vectors through the frozen
model, logits, and the gradient back to the inputs (no weight gradients). Prints the best of
`--repeats` timings per variant and the ratio to float32. Speed only: exactness in bf16 would
still have to be judged and verified in float32.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from memtok.models import load


def step_seconds(model: torch.nn.Module, x: torch.Tensor, autocast: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        leaf = x.clone().requires_grad_(True)
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(inputs_embeds=leaf, use_cache=False).logits
        logits.float().logsumexp(-1).sum().backward()
        times.append(time.perf_counter() - t)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--positions", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    lm = load(args.model, "cpu")
    x = torch.randn(args.batch_size, args.positions, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    x = x * lm.embedding_std
    rows = [("float32", step_seconds(lm.model, x, False, args.repeats)),
            ("bf16 autocast", step_seconds(lm.model, x, True, args.repeats)),
            ("bf16 weights", step_seconds(copy.deepcopy(lm.model).to(torch.bfloat16), x.bfloat16(), False,
                                          args.repeats))]
    print(f"{'variant':<14} {'s/step':>8} {'speed-up':>9}")
    for name, sec in rows:
        print(f"{name:<14} {sec:>8.3f} {rows[0][1] / sec:>9.2f}")


if __name__ == "__main__":
    main()
