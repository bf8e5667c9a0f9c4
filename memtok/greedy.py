"""Greedy decoding from memory vectors alone, with a KV cache: what a user of a memory runs.

`greedy` is `memtok decode`'s computation: one memory, until EOS. `greedy_batch` runs the same loop
over several memories with the same number of vectors at once (no padding: their contexts have the
same length) and reports by how much each choice won, which `memtok.verify` needs; given the
targets, it stops each row at its first wrong choice, which settles the verdict. `greedy_many`
decodes many memories in batches with `greedy`'s result: a batched row stands only where each of
its choices won by `SAFE_MARGIN` (why that suffices: `memtok.verify`), any other is decoded alone.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from .layout import Layout
from .model import FrozenLM

SAFE_MARGIN = 0.1  # logits; 138x the largest batched-vs-single logit difference measured (7.3e-4)


def _cache_arg(model: torch.nn.Module) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; speak whichever the model knows."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def greedy_batch(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, max_new_tokens: int,
                 targets: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids [B, n] generated from each [prefix, vectors, infix] of `vectors` [B, K, d], and the margin
    of each choice over the runner-up logit [B, n]; n stops at `max_new_tokens` or once every row
    has ended: produced EOS or, given `targets`, departed from or run past its own targets (a
    verdict needs nothing more). A row's ids after its end mean nothing."""
    weight = lm.model.get_input_embeddings().weight
    vectors = vectors.to(weight.device, weight.dtype)
    context = torch.stack([layout.context(lm, v) for v in vectors])
    arg = _cache_arg(lm.model)
    out = lm.model(inputs_embeds=context, use_cache=True)
    ids, margins = [], []
    ended = torch.zeros(len(vectors), dtype=torch.bool, device=weight.device)
    expected = None
    if targets is not None:  # -1 past a row's own targets: no id equals it
        expected = torch.full((len(targets), max_new_tokens), -1, dtype=torch.long)
        for row, t in zip(expected, targets):
            row[:len(t)] = torch.tensor(t[:max_new_tokens], dtype=torch.long)
        expected = expected.to(weight.device)
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
        out = lm.model(input_ids=nxt[:, None], use_cache=True, **{arg: getattr(out, arg)})


def greedy(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Token ids generated from [prefix, vectors, infix], up to and including EOS."""
    return greedy_batch(lm, layout, vectors[None], max_new_tokens)[0][0].tolist()


def greedy_many(lm: FrozenLM, jobs: Sequence[tuple[Layout, torch.Tensor, int]], batch_size: int = 32,
                done: Callable[[int], None] | None = None) -> list[list[int]]:
    """`greedy` of each (layout, vectors [K, d], max_new_tokens), in batches of rows that share a
    layout and are of similar lengths: decoding one memory at a time reads every weight once per
    token for each of them. `done(n)` is told as rows finish."""
    results: list[list[int] | None] = [None] * len(jobs)
    groups: dict[Layout, list[int]] = defaultdict(list)
    for i, (layout, vectors, _) in enumerate(jobs):
        groups[layout.with_k(len(vectors))].append(i)
    for layout, rows in groups.items():
        rows.sort(key=lambda i: jobs[i][2])
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            if len(chunk) > 1 and not lm.quantised:  # a quantised model's batch moves logits beyond any margin
                ids, margins = greedy_batch(lm, layout, torch.stack([jobs[i][1] for i in chunk]),
                                            max(jobs[i][2] for i in chunk))
                for j, i in enumerate(chunk):
                    row = ids[j, :jobs[i][2]].tolist()
                    end = row.index(lm.eos_id) + 1 if lm.eos_id in row else len(row)
                    if margins[j, :end].min() >= SAFE_MARGIN:
                        results[i] = row[:end]
            for i in chunk:
                if results[i] is None:
                    results[i] = greedy(lm, layout, jobs[i][1], jobs[i][2])
            if done:
                done(len(chunk))
    return results
