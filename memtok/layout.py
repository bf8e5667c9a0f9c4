"""Where the memory vectors sit in the model's input, and the sequences built around them.

Input:   [prefix tokens] [K memory vectors] [infix tokens] [text tokens]
Targets:                                  text tokens + EOS, predicted from the last vector on.
The prefix is the model's BOS (when the recipe asks for it) plus the template's text before
`{memory}`; the infix is the template's text after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .errors import MemtokError
from .limits import PLACEHOLDER, check_k, check_template
from .model import FrozenLM

if TYPE_CHECKING:
    from .memory import Memory

DEFAULT_TEMPLATE = PLACEHOLDER


@dataclass(frozen=True)
class Layout:
    prefix_ids: tuple[int, ...]
    infix_ids: tuple[int, ...]
    k: int
    template: str | None = None  # the template it was built from, when it is not the config's own (a chat's)

    @classmethod
    def build(cls, lm: FrozenLM, template: str, k: int, bos: bool, specials: bool = False) -> Layout:
        """`specials`: the template's special tokens (a chat template's) are parsed as such, not spelt out."""
        check_template(template)
        check_k(k)
        head, tail = template.split(PLACEHOLDER)
        prefix = ([lm.bos_id] if bos else []) + (lm.tokenize(head, specials) if head else [])
        return cls(tuple(prefix), tuple(lm.tokenize(tail, specials) if tail else ()), k,
                   template if specials else None)

    @classmethod
    def of(cls, memory: Memory) -> Layout:
        """Where a memory's vectors sat when they were made: decoding must put them there again."""
        return cls(tuple(memory.prefix_ids), tuple(memory.infix_ids), memory.k)

    def with_k(self, k: int) -> Layout:
        return Layout(self.prefix_ids, self.infix_ids, k, self.template)

    @property
    def first_target(self) -> int:
        """Position whose logits predict the first text token."""
        return len(self.prefix_ids) + self.k + len(self.infix_ids) - 1

    def room(self, lm: FrozenLM, max_batch_tokens: int) -> int:
        """Text tokens that fit beside the vectors and the EOS, in the context and in one pass."""
        if self.first_target + 2 > max_batch_tokens:
            raise MemtokError(f"{self.k} memory vectors leave no room for text in {max_batch_tokens} positions "
                              f"per pass (max_batch_tokens)")
        room = lm.context_length - self.first_target - 1
        if room < 1:
            raise MemtokError(f"{self.k} memory vectors leave no room for text in the context of {lm.name} "
                              f"({lm.context_length})")
        return min(room, max_batch_tokens - self.first_target - 1)

    def context(self, lm: FrozenLM, vectors: torch.Tensor) -> torch.Tensor:
        """[prefix, vectors, infix] as input vectors: the whole prompt a memory decodes from."""
        dev = vectors.device
        parts = [lm.embed(torch.tensor(self.prefix_ids, dtype=torch.long, device=dev)),
                 vectors,
                 lm.embed(torch.tensor(self.infix_ids, dtype=torch.long, device=dev))]
        return torch.cat(parts, dim=0)
