"""Greedy decoding from memory vectors alone, with a KV cache: what a user of a memory runs.

`greedy` is `memtok decode`'s computation: one memory, until EOS. `greedy_batch` runs the same loop
over several memories with the same number of vectors at once (no padding: their contexts have the
same length) and reports by how much each choice won, which `memtok.verify` needs; given the
targets, it stops each row at its first wrong choice, which settles the verdict.
"""

from __future__ import annotations

import inspect

import torch

from .layout import Layout
from .model import FrozenLM


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
