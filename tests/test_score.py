import torch
from helpers import TEXTS

from memtok.decode.score import score
from memtok.model.layout import Layout


def next_token_misses(lm, context: torch.Tensor, targets: list[int]) -> tuple[list[int], set[int]]:
    """Positions whose target is not the argmax after context + the targets before it, one forward
    per position: the slow, obvious computation that one teacher-forced pass must agree with. Also
    the near ties, where the two computations may round to different winners: a top-2 gap within
    float32 rounding of the longest reduction, once per layer and for the head (as in test_codec)."""
    cfg = lm.model.config
    n = max(cfg.intermediate_size, cfg.hidden_size)
    misses, ties = [], set()
    for i, t in enumerate(targets):
        x = torch.cat([context, lm.embed(torch.tensor(targets[:i], dtype=torch.long))])
        logits = lm.model(inputs_embeds=x[None]).logits[0, -1]
        top2 = logits.topk(2).values
        if top2[0] - top2[1] <= (cfg.num_hidden_layers + 1) * n * torch.finfo(torch.float32).eps * logits.abs().max():
            ties.add(i)
        if int(logits.argmax()) != t:
            misses.append(i)
    return misses, ties


@torch.no_grad()
def test_wrong_positions_are_the_tokens_a_memory_misses(tiny_codec):
    lm = tiny_codec.lm
    targets = tiny_codec.target_ids(TEXTS[2])
    layout = Layout.build(lm, "{memory}", 1, bos=True)
    memory = torch.randn(1, lm.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    s = score(lm, layout, targets, memory)
    expected, ties = next_token_misses(lm, layout.inputs(lm, memory), targets)
    assert expected, "a random vector should miss something, or this test checks nothing"
    assert set(s.wrong) - ties == set(expected) - ties and s.correct == len(targets) - len(s.wrong)


@torch.no_grad()
def test_with_nothing_before_the_text_the_first_token_counts_wrong(tiny_codec):
    lm = tiny_codec.lm
    targets = tiny_codec.target_ids(TEXTS[2])
    s = score(lm, Layout.build(lm, "{memory}", 1, bos=False), targets)
    first = lm.embed(torch.tensor(targets[:1], dtype=torch.long))
    misses, ties = next_token_misses(lm, first, targets[1:])
    assert s.wrong[0] == 0 and {w - 1 for w in s.wrong[1:]} - ties == set(misses) - ties
    assert s.correct == len(targets) - len(s.wrong)
