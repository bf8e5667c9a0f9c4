"""Beam search from memory vectors: does a decoder that is not greedy also give the text back?

A memory is made and verified for greedy decoding, the decoder every check here assumes. Beam
search keeps the N best partial texts by summed log-probability; it can leave the greedy path
where a later token is more certain than an early one is, so a memory exact under greedy need not
be under beam search. transformers' own `generate` runs it (no sampling, length penalty 1, stop
at EOS), so the figure is that of the decoder people use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import GenerationConfig

from ..model.layout import Layout
from ..model.model import FrozenLM


@torch.no_grad()
def beam_decode(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, beams: int, max_new_tokens: int) -> list[int]:
    """The best beam's token ids from [prefix, vectors, infix], up to and including EOS."""
    context = layout.inputs(lm, vectors)[None]
    # a config of its own: a model's generation_config may ask for sampling or a repetition penalty
    config = GenerationConfig(num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens,
                              eos_token_id=lm.eos_id, pad_token_id=lm.eos_id, length_penalty=1.0,
                              **({"early_stopping": True} if beams > 1 else {}))
    mask = torch.ones(context.shape[:2], dtype=torch.long, device=lm.device)
    out = lm.model.generate(inputs_embeds=context, attention_mask=mask, generation_config=config)
    ids = out[0].tolist()  # with inputs_embeds alone, generate returns only the new tokens
    if lm.eos_id in ids:
        ids = ids[:ids.index(lm.eos_id) + 1]
    return ids


def departs(got: Sequence, wanted: Sequence) -> int | None:
    """The first position (token or character) where `got` leaves `wanted`, or None when they are the same."""
    for i, (a, b) in enumerate(zip(got, wanted)):
        if a != b:
            return i
    return None if len(got) == len(wanted) else min(len(got), len(wanted))
