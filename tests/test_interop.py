"""A memory works with the tools people already have: plain transformers generates its text."""

import torch
from helpers import TEXTS


def test_a_memory_decodes_through_plain_transformers_generate(tiny_codec):
    """The layout spelled out: [BOS, the memory's vectors, its template's text] as `inputs_embeds`,
    then greedy generation (segment after segment, for a text cut in several) gives the text back."""
    lm = tiny_codec.lm
    mem = tiny_codec.encode(TEXTS[0], k=1)
    assert mem.exact
    pieces = []
    for _, layout, vectors, n in tiny_codec.segments([mem]):
        embeds = layout.inputs(lm, vectors)[None]  # what the model reads before the segment's text
        ids = lm.model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                max_new_tokens=n + 1, do_sample=False, eos_token_id=lm.eos_id, pad_token_id=lm.eos_id)
        pieces.append(lm.detokenize([i for i in ids[0].tolist() if i != lm.eos_id]))
    assert "".join(pieces) == TEXTS[0]
