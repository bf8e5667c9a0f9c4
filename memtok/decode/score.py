"""How well the model predicts a text, with a memory or with none: the yardstick of a memory's gain.

The information a memory must carry is the cross-entropy the model still has on the text without
it (Kuratov et al.: capacity is bounded by the nats the vectors remove), so the unaided score
predicts how many vectors a text needs, and `memtok capacity` reports gains against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.layout import Layout
from ..model.model import FrozenLM


@dataclass(frozen=True)
class Score:
    nats: float  # summed cross-entropy of the targets (EOS included)
    correct: int  # targets whose teacher-forced argmax is right
    wrong: tuple[int, ...] = ()  # the others' positions in the targets: which tokens a memory misses


@torch.no_grad()
def score(lm: FrozenLM, layout: Layout, targets: list[int], vectors: torch.Tensor | None = None) -> Score:
    """Teacher-forced score of `targets` after [prefix, vectors, infix], or [prefix, infix] with no memory.

    With nothing at all before the text (the paper's layout, unaided) the first target has no
    context: it is scored as a uniform guess, log(vocabulary) nats and not right.
    """
    context = len(layout.prefix_ids) + len(layout.infix_ids) + (0 if vectors is None else len(vectors))
    scored = targets if context else targets[1:]
    nats = 0.0 if context else math.log(lm.vocab_size)
    wrong = [] if context else [0]
    if scored:
        x = layout.inputs(lm, vectors, targets[:-1])
        logits = lm.logits(x[None], len(x) - len(scored))[0]
        tgt = torch.tensor(scored, device=lm.device)
        nats += F.cross_entropy(logits, tgt, reduction="sum").item()
        offset = len(targets) - len(scored)
        wrong += [offset + i for i in (logits.argmax(-1) != tgt).nonzero().flatten().tolist()]
    return Score(nats, len(targets) - len(wrong), tuple(wrong))


def entropy_bits(lm: FrozenLM, layout: Layout, targets: list[int], window: int = 1024) -> float:
    """The text's cross-entropy in bits under the model with no memory, scored `window` targets at a
    time: what an arithmetic coder driven by the model needs, the bound of any memory's size."""
    room = max(1, min(window, lm.context_length - len(layout.prefix_ids) - len(layout.infix_ids) - 1))
    nats = sum(score(lm, layout, targets[i:i + room]).nats for i in range(0, len(targets), room))
    return nats / math.log(2)
