"""What a faster step would buy: one optimisation step (forward + backward to the inputs) of the
frozen model in float32, compiled with `torch.compile`, under bf16 autocast, and with bf16
weights, side by side in one process.

    python bench/step_time.py --batch-sizes 20 --positions 28 --variants float32,compiled,autocast,bf16
    python bench/step_time.py --device cuda --batch-sizes 1,8,40 --variants float32,autocast   # on a GPU

A step here is what `memtok.encode.optimise.optimise` runs: a batch of input vectors through the frozen
model, logits, and the gradient back to the inputs (no weight gradients). Prints the best of
`--repeats` timings per variant (after warm-ups, which for `compiled` include the compilation,
reported apart), the ratio to the first variant, and with several batch sizes the texts per
second each gives over batch 1's (what batching can buy at best, steps being equal). Speed only:
exactness in bf16 would still have to be judged and verified in float32.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from memtok.model.loading import load

Forward = Callable[[torch.Tensor], torch.Tensor]


def timed_step(forward: Forward, x: torch.Tensor, autocast: bool) -> float:
    leaf = x.clone().requires_grad_(True)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = forward(leaf)
    logits.float().logsumexp(-1).sum().backward()
    sync()
    return time.perf_counter() - t


def variant(name: str, model: torch.nn.Module) -> tuple[Forward, torch.dtype, bool]:
    """The forward, the input dtype and whether to autocast, for one variant (built once, run at
    every batch size; `compiled` recompiles for each new shape, which its warm-ups absorb)."""
    def plain(m: torch.nn.Module) -> Forward:
        return lambda e: m(inputs_embeds=e, use_cache=False).logits

    if name == "float32":
        return plain(model), torch.float32, False
    if name == "compiled":
        return torch.compile(plain(model), dynamic=False), torch.float32, False
    if name == "autocast":
        return plain(model), torch.float32, True
    if name == "bf16":
        return plain(copy.deepcopy(model).to(torch.bfloat16)), torch.bfloat16, False
    raise SystemExit(f"unknown variant {name!r}: choose from float32, compiled, autocast, bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="20", help="comma-separated; each variant runs at each")
    ap.add_argument("--positions", type=int, default=28)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmups", type=int, default=2)
    ap.add_argument("--variants", default="float32,compiled,autocast,bf16")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    lm = load(args.model, args.device)
    print(f"{lm.name} on {lm.device}, {args.positions} positions, best of {args.repeats}")
    print(f"{'variant':<10} {'batch':>6} {'s/step':>8} {'speed-up':>9} {'texts/s vs 1st batch':>19} {'warm-up s':>10}")
    baseline: dict[int, float] = {}  # the first variant's s/step at each batch size
    for name in args.variants.split(","):
        forward, dtype, autocast = variant(name, lm.model)
        first = None
        for batch in map(int, args.batch_sizes.split(",")):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(batch, args.positions, lm.hidden_size, generator=g) * lm.embedding_std
            inputs = x.to(lm.device, dtype)
            warm = sum(timed_step(forward, inputs, autocast) for _ in range(args.warmups))
            best = min(timed_step(forward, inputs, autocast) for _ in range(args.repeats))
            first = first or (batch, best)
            base = baseline.setdefault(batch, best)
            print(f"{name:<10} {batch:>6} {best:>8.3f} {base / best:>9.2f} "
                  f"{(batch / best) / (first[0] / first[1]):>19.2f} {warm:>10.1f}")


if __name__ == "__main__":
    main()
