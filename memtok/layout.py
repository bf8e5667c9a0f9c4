"""Where the memory vectors sit in the model's input, and the sequences built around them.

Input:   [prefix tokens] [K memory vectors] [infix tokens] [text tokens]
Targets:                                  text tokens + EOS, predicted from the last vector on.
The prefix is the model's BOS (when the recipe asks for it) plus the template's text before
`{memory}`; the infix is the template's text after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import MemtokError
from .models import FrozenLM

PLACEHOLDER = "{memory}"
DEFAULT_TEMPLATE = PLACEHOLDER


@dataclass(frozen=True)
class Layout:
    prefix_ids: tuple[int, ...]
    infix_ids: tuple[int, ...]
    k: int

    @classmethod
    def build(cls, lm: FrozenLM, template: str, k: int, bos: bool) -> Layout:
        if template.count(PLACEHOLDER) != 1:
            raise MemtokError(f"template must contain {PLACEHOLDER} exactly once, got {template!r}")
        if not 1 <= k <= 256:
            raise MemtokError(f"number of memory tokens must be between 1 and 256, got {k}")
        head, tail = template.split(PLACEHOLDER)
        prefix = ([lm.bos_id] if bos else []) + (lm.tokenize(head) if head else [])
        return cls(tuple(prefix), tuple(lm.tokenize(tail) if tail else ()), k)

    def with_k(self, k: int) -> Layout:
        return Layout(self.prefix_ids, self.infix_ids, k)

    @property
    def first_target(self) -> int:
        """Position whose logits predict the first text token."""
        return len(self.prefix_ids) + self.k + len(self.infix_ids) - 1

    def context(self, lm: FrozenLM, memory: torch.Tensor) -> torch.Tensor:
        """[prefix, memory, infix] as input vectors: the whole prompt a memory decodes from."""
        dev = memory.device
        parts = [lm.embed(torch.tensor(self.prefix_ids, dtype=torch.long, device=dev)),
                 memory,
                 lm.embed(torch.tensor(self.infix_ids, dtype=torch.long, device=dev))]
        return torch.cat(parts, dim=0)
