import torch
from conftest import TEXTS

from memtok.layout import Layout
from memtok.score import score


def next_token_misses(lm, context: torch.Tensor, targets: list[int]) -> list[int]:
    """Positions whose target is not the argmax after context + the targets before it, one forward
    per position: the slow, obvious computation that one teacher-forced pass must agree with."""
    misses = []
    for i, t in enumerate(targets):
        x = torch.cat([context, lm.embed(torch.tensor(targets[:i], dtype=torch.long))])
        if int(lm.model(inputs_embeds=x[None]).logits[0, -1].argmax()) != t:
            misses.append(i)
    return misses


@torch.no_grad()
def test_wrong_positions_are_the_tokens_a_memory_misses(tiny_codec):
    lm = tiny_codec.lm
    targets = tiny_codec.target_ids(TEXTS[2])
    layout = Layout.build(lm, "{memory}", 1, bos=True)
    memory = torch.randn(1, lm.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    s = score(lm, layout, targets, memory)
    expected = next_token_misses(lm, layout.context(lm, memory), targets)
    assert expected, "a random vector should miss something, or this test checks nothing"
    assert list(s.wrong) == expected and s.correct == len(targets) - len(expected)


@torch.no_grad()
def test_with_nothing_before_the_text_the_first_token_counts_wrong(tiny_codec):
    lm = tiny_codec.lm
    targets = tiny_codec.target_ids(TEXTS[2])
    s = score(lm, Layout.build(lm, "{memory}", 1, bos=False), targets)
    first = lm.embed(torch.tensor(targets[:1], dtype=torch.long))
    assert s.wrong[0] == 0 and list(s.wrong[1:]) == [1 + i for i in next_token_misses(lm, first, targets[1:])]
    assert s.correct == len(targets) - len(s.wrong)
