"""Where the memory vectors sit in the model's input, and the sequences built around them.

Input:   [prefix tokens] [K memory vectors] [infix tokens] [text tokens]
Targets:                                  text tokens + EOS, predicted from the last vector on.
The prefix is the model's BOS (when the recipe asks for it) plus the template's text before
`{memory}`; the infix is the template's text after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..limits import PLACEHOLDER
from .model import FrozenLM

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

    def with_k(self, k: int) -> Layout:
        return Layout(self.prefix_ids, self.infix_ids, k, self.template)

    @property
    def first_target(self) -> int:
        """Position whose logits predict the first text token."""
        return len(self.prefix_ids) + self.k + len(self.infix_ids) - 1

    def inputs(self, lm: FrozenLM, vectors: torch.Tensor | None, text: torch.Tensor | list[int] = ()) -> torch.Tensor:
        """The model's input vectors [prefix, vectors, infix, text]: what every pass over a memory
        reads (the encode's batch, verification and decoding, scoring, beam search, search, the
        start's training), built here alone. `vectors` [K, d] (None: a text with no memory) go to the
        model's device and dtype; `text`: token ids after them, a tensor on the model's device or a
        list."""
        parts = [lm.embed_prompt(self.prefix_ids)]
        if vectors is not None:
            parts.append(vectors.to(lm.device, lm.dtype))
        parts.append(lm.embed_prompt(self.infix_ids))
        if len(text):
            ids = text if isinstance(text, torch.Tensor) else torch.tensor(list(text), dtype=torch.long, device=lm.device)
            parts.append(lm.embed(ids))
        return torch.cat(parts, dim=0)
