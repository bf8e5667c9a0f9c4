"""Greedy decoding from memory vectors alone, with a KV cache: what a user of a memory runs."""

from __future__ import annotations

import inspect

import torch

from .layout import Layout
from .models import FrozenLM


def _cache_arg(model: torch.nn.Module) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; speak whichever the model knows."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def greedy(lm: FrozenLM, layout: Layout, memory: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Token ids generated from [prefix, memory, infix], up to and including EOS."""
    weight = lm.model.get_input_embeddings().weight
    context = layout.context(lm, memory.to(weight.device, weight.dtype))[None]
    arg = _cache_arg(lm.model)
    out = lm.model(inputs_embeds=context, use_cache=True)
    ids: list[int] = []
    eos = lm.eos_id
    while True:
        nxt = out.logits[0, -1].argmax()
        ids.append(int(nxt))
        if ids[-1] == eos or len(ids) >= max_new_tokens:
            return ids
        out = lm.model(input_ids=nxt.view(1, 1), use_cache=True, **{arg: getattr(out, arg)})
