"""What the model predicts of a text with no memory at all: the yardstick for a memory's gain.

The information a memory must carry is the cross-entropy the model still has on the text without
it (Kuratov et al.: capacity is bounded by the nats the vectors remove), so this predicts how many
vectors a text needs, and `memtok capacity` reports gains against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layout import Layout
from .models import FrozenLM


@dataclass(frozen=True)
class Unaided:
    nats: float  # summed cross-entropy of the targets (EOS included)
    correct: int  # targets whose teacher-forced argmax is right


@torch.no_grad()
def unaided(lm: FrozenLM, layout: Layout, targets: list[int]) -> Unaided:
    """Teacher-forced score of `targets` after the layout's prefix and infix, with no memory between.

    With nothing before the text (the paper's layout) the first target has no context: it is
    scored as a uniform guess, log(vocabulary) nats and not right.
    """
    context = list(layout.prefix_ids) + list(layout.infix_ids)
    scored = targets if context else targets[1:]
    nats, correct = 0.0, 0
    if not context:
        nats += math.log(lm.model.get_output_embeddings().weight.shape[0])
    if scored:
        ids = torch.tensor(context + targets[:-1], device=lm.device)
        logits = lm.model(input_ids=ids[None]).logits[0, -len(scored):].float()
        tgt = torch.tensor(scored, device=lm.device)
        nats += F.cross_entropy(logits, tgt, reduction="sum").item()
        correct += int((logits.argmax(-1) == tgt).sum())
    return Unaided(nats, correct)
