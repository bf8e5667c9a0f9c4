"""Greedy decoding from memory vectors alone, with a KV cache: what a user of a memory runs, and
whether a memory is exact.

`greedy` is `memtok decode`'s computation: one memory, until EOS. `greedy_batch` runs the same loop
over several memories with the same number of vectors at once (no padding: their contexts have the
same length) and reports by how much each choice won; given the targets, it stops each row at its
first wrong choice, which settles a verdict. `greedy_many` is the one batched-decoding rule, which
both decoding and verification (`verify`) use: rows that share a layout are decoded in batches, and
a batched row stands only where each of its choices (up to its EOS, or up to its first departure
from its targets) won by `SAFE_MARGIN`; any other row is decoded alone.

Why the margin suffices: a batched matrix product is not bit for bit the single one that
`memtok decode` runs (on SmolLM2-135M on a 2-core CPU, logits differ by up to 7.3e-4 between batch
sizes 1 and 8-64, at 1 and 2 threads: `bench/batched_vs_single.py`, docs/trust.md), so where every
choice won by far more than that, the single decoding makes the same choices. That holds for float32
weights only (`batches_exactly`): in bfloat16 a batch of 32 moved margins by up to 0.75 logits, in
float16 any batch moved them by 0.0625, and
8-bit weights choose their 16-bit columns from the whole batch (of 4 memories verified in a batch
with 8-bit weights, one did not decode alone, `bench/model_dtypes.py`); such models decode every
row alone.
Decoding one memory at a time reads every weight once per token for each of them; a batch reads
them once per token for all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from ..model.decoding import extend, prefill
from ..model.layout import Layout
from ..model.model import FrozenLM

SAFE_MARGIN = 0.1  # logits; 138x the largest batched-vs-single logit difference measured in float32 (7.3e-4)


def batches_exactly(lm: FrozenLM) -> bool:
    """Whether a batched row whose every choice won by `SAFE_MARGIN` makes the choices it makes alone:
    measured for float32 weights (margins moved by at most 1.9e-4 between batch sizes). On a CPU, in
    bfloat16 they moved by up to 0.75 logits from batch 32 on, in float16 by 0.0625 from batch 2 on
    (logits by up to 0.164), and quantised weights depend on the batch itself (docs/trust.md), so
    such models decode every row alone."""
    return lm.dtype == torch.float32 and not lm.quantised


@torch.no_grad()
def greedy_batch(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, max_new_tokens: int,
                 targets: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids [B, n] generated from each [prefix, vectors, infix] of `vectors` [B, K, d], and the margin
    of each choice over the runner-up logit [B, n]; n stops at `max_new_tokens` or once every row
    has ended: produced EOS or, given `targets`, departed from or run past its own targets (a
    verdict needs nothing more). A row's ids after its end mean nothing."""
    device = lm.device
    context = torch.stack([layout.inputs(lm, v) for v in vectors])
    out = prefill(lm, context)
    ids, margins = [], []
    ended = torch.zeros(len(vectors), dtype=torch.bool, device=device)
    expected = None
    if targets is not None:  # -1 past a row's own targets: no id equals it
        expected = torch.full((len(targets), max_new_tokens), -1, dtype=torch.long)
        for row, t in zip(expected, targets):
            row[:len(t)] = torch.tensor(t[:max_new_tokens], dtype=torch.long)
        expected = expected.to(device)
    while True:
        logits = out.logits[:, -1]
        nxt = logits.argmax(-1)
        best = logits.gather(-1, nxt[:, None])
        margins.append((best - logits.scatter(-1, nxt[:, None], -torch.inf).amax(-1, keepdim=True))[:, 0].float())
        ids.append(nxt)
        ended |= nxt == lm.eos_id
        if expected is not None:
            ended |= nxt != expected[:, len(ids) - 1]
        if bool(ended.all()) or len(ids) >= max_new_tokens:
            return torch.stack(ids, 1).cpu(), torch.stack(margins, 1).cpu()
        out = extend(lm, nxt[:, None], out)


def greedy(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, max_new_tokens: int,
           targets: list[int] | None = None) -> list[int]:
    """Token ids generated from [prefix, vectors, infix], up to and including EOS, or given `targets`
    up to the first departure from them."""
    wanted = None if targets is None else [targets]
    return greedy_batch(lm, layout, vectors[None], max_new_tokens, wanted)[0][0].tolist()


def greedy_many(lm: FrozenLM, jobs: Sequence[tuple[Layout, torch.Tensor, int]], batch_size: int = 32,
                done: Callable[[int], None] | None = None,
                targets: Sequence[list[int]] | None = None) -> list[list[int]]:
    """`greedy` of each (layout, vectors [K, d], max_new_tokens), the very ids each gives alone: up to
    its EOS or, given `targets` (one list per job), up to its first departure from them. In batches
    of rows that share a layout and are of similar lengths. `done(n)` is told as rows finish."""
    results: list[list[int] | None] = [None] * len(jobs)
    groups: dict[Layout, list[int]] = defaultdict(list)
    for i, (layout, vectors, _) in enumerate(jobs):
        groups[layout.with_k(len(vectors))].append(i)
    for layout, rows in groups.items():
        rows.sort(key=lambda i: jobs[i][2])
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            wanted = None if targets is None else [targets[i] for i in chunk]
            if len(chunk) > 1 and batches_exactly(lm):
                ids, margins = greedy_batch(lm, layout, torch.stack([jobs[i][1] for i in chunk]),
                                            max(jobs[i][2] for i in chunk), wanted)
                for j, i in enumerate(chunk):
                    row = ids[j, :jobs[i][2]].tolist()
                    end = _judged(row, lm.eos_id, None if wanted is None else wanted[j])
                    if margins[j, :end].min() >= SAFE_MARGIN:
                        results[i] = row[:end]
            for j, i in enumerate(chunk):
                if results[i] is None:
                    results[i] = greedy(lm, layout, jobs[i][1], jobs[i][2], None if wanted is None else wanted[j])
            if done:
                done(len(chunk))
    return results


def _judged(row: list[int], eos: int, targets: list[int] | None) -> int:
    """How many of a batched row's choices decide its result: up to its EOS, or given `targets` up to
    its first departure from them (its ids after that mean nothing)."""
    if targets is not None:
        return next((p + 1 for p, (a, b) in enumerate(zip(row, targets)) if a != b), len(row))
    return row.index(eos) + 1 if eos in row else len(row)


def verify(lm: FrozenLM, layout: Layout, vectors: list[torch.Tensor], targets: list[list[int]]) -> list[bool]:
    """For each memory's vectors [K, d] (K may differ between them): does greedy decoding give exactly
    its targets? All in one batch per K; a decoding stops at its first wrong choice, so a memory that
    fails early costs a few tokens, not the text's length."""
    jobs = [(layout, v, len(t)) for v, t in zip(vectors, targets)]
    return [got == t for got, t in zip(greedy_many(lm, jobs, max(1, len(jobs)), targets=targets), targets)]
