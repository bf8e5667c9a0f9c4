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

from .auto_k import max_auto_k
from .limits import PLACEHOLDER
from .model import FrozenLM

if TYPE_CHECKING:
    from .config import EncodeConfig
    from .memory import Memory

DEFAULT_TEMPLATE = PLACEHOLDER


@dataclass(frozen=True)
class Layout:
    prefix_ids: tuple[int, ...]
    infix_ids: tuple[int, ...]
    k: int
    template: str | None = None  # the template it was built from, when it is not the config's own (a chat's)

    @classmethod
    def build(cls, lm: FrozenLM, template: str, k: int, bos: bool, chat: bool = False) -> Layout:
        """`chat`: `template` is the user's turn inside the model's own chat template, which brings its
        own start (no BOS before it)."""
        head, tail, used = lm.template_ids(template, chat)
        prefix = ([lm.bos_id] if bos and not chat else []) + head
        return cls(tuple(prefix), tuple(tail), k, used if chat else None)

    @classmethod
    def for_config(cls, lm: FrozenLM, config: EncodeConfig, k: int | None = None) -> Layout:
        """The layout of `k` vectors (default: the config's K, or the most a plan or a search may try)
        around the config's prompt; `config.recipe` decided."""
        if k is None:
            k = config.k if config.fixed else max_auto_k(lm.context_length)
        return cls.build(lm, config.template, k, config.recipe.bos, config.chat)

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

    def context(self, lm: FrozenLM, vectors: torch.Tensor) -> torch.Tensor:
        """[prefix, vectors, infix] as input vectors: the whole prompt a memory decodes from."""
        dev = vectors.device
        parts = [lm.embed(torch.tensor(self.prefix_ids, dtype=torch.long, device=dev)),
                 vectors,
                 lm.embed(torch.tensor(self.infix_ids, dtype=torch.long, device=dev))]
        return torch.cat(parts, dim=0)
