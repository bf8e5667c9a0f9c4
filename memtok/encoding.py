"""One `MemoryCodec.encode` call's bookkeeping: the texts cut into pieces that fit the model, a job
per piece (and per retry with `k="auto"`), and each text's `Memory` put together once its last
piece has settled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from .auto_k import KPlanner, max_auto_k
from .config import EncodeConfig
from .errors import MemtokError
from .header import sha256_text
from .layout import Layout
from .memory import Memory
from .model import FrozenLM
from .optimise import Job, Optimised
from .score import score
from .segment import split_text


def target_ids(lm: FrozenLM, text: str) -> list[int]:
    """The text's token ids followed by EOS: what decoding must produce. Checks the text."""
    if not isinstance(text, str):
        raise MemtokError(f"texts must be str, got {type(text).__name__}")
    if not text:
        raise MemtokError("empty text: there is nothing to encode")
    ids = lm.tokenize(text)
    if lm.detokenize(ids) != text:
        raise MemtokError(f"the tokenizer of {lm.name} cannot reproduce this text byte for byte")
    return ids + [lm.eos_id]


def layout_for(lm: FrozenLM, config: EncodeConfig, k: int | None = None) -> Layout:
    """The layout of `k` vectors (default: the config's K, or the most `k="auto"` may try)."""
    if k is None:
        k = max_auto_k(lm.context_length) if config.auto else config.k
    return Layout.build(lm, config.template, k, config.recipe.bos)


@dataclass
class Piece:
    """A text, or one segment of a text too long for one memory, on its way through the optimiser."""

    text_index: int
    text: str
    targets: list[int]  # ids + EOS
    nats: float = 0.0  # unaided cross-entropy, for `k="auto"`
    tried: list[int] = field(default_factory=list)  # K of each try, in order
    outcomes: dict[int, bool] = field(default_factory=dict)  # K -> exact
    steps: int = 0
    seconds: float = 0.0
    result: Optimised | None = None  # the smallest exact try, else the latest
    exact: bool = False

    def add_try(self, result: Optimised, exact: bool) -> None:
        k = len(result.vectors)
        self.tried.append(k)
        self.outcomes[k] = exact
        self.steps += result.steps
        self.seconds += result.seconds
        if not self.exact or (exact and k < len(self.result.vectors)):
            self.result, self.exact = result, exact


class EncodeRun:
    """The pieces of a list of texts, their job queue, and which texts are complete."""

    def __init__(self, lm: FrozenLM, texts: list[str], config: EncodeConfig) -> None:
        self.lm, self.texts, self.config = lm, texts, config
        self.layout = layout_for(lm, config)
        self.planner = KPlanner(lm.hidden_size, config.recipe.max_steps, self.layout.k) if config.auto else None
        self.pieces = self._cut()
        self.of_text: list[list[Piece]] = [[] for _ in texts]
        for p in self.pieces:
            self.of_text[p.text_index].append(p)
        self.left = [len(group) for group in self.of_text]  # pieces of each text not yet settled
        self.queue = self._first_jobs()

    def _cut(self) -> list[Piece]:
        """Each text, cut where it must be (or where asked) into pieces that fit the model."""
        room = self.layout.room(self.lm, self.config.max_batch_tokens)
        limit = room if self.config.segment_tokens is None else min(room, self.config.segment_tokens)
        pieces = []
        for i, text in enumerate(self.texts):
            target_ids(self.lm, text)  # checks the whole text first, for a clear error
            pieces += [Piece(i, piece, target_ids(self.lm, piece)) for piece in split_text(self.lm, text, limit)]
        return pieces

    def _first_jobs(self) -> deque[Job]:
        """Longest first: the long texts start early and the short ones fill the tail."""
        jobs: deque[Job] = deque()
        for key in sorted(range(len(self.pieces)), key=lambda j: -len(self.pieces[j].targets)):
            p = self.pieces[key]
            if self.planner is None:
                jobs.append(Job(key, p.targets, self.config.k))
                continue
            p.nats = score(self.lm, self.layout, p.targets).nats
            k = self.planner.first(p.nats)
            jobs.append(Job(key, p.targets, k, max_steps=self.planner.steps(k)))
        return jobs

    def settle(self, result: Optimised, exact: bool) -> int | None:
        """Record a verified try; returns the index of a text all of whose pieces are now settled.

        With `k="auto"` a try may call for another (queued first, so that no text is left
        half-done for long), and the piece is not settled yet.
        """
        p = self.pieces[result.key]
        p.add_try(result, exact)
        if self.planner is not None:
            nk = self.planner.decide(p.outcomes, len(result.vectors), result.loss * len(p.targets))
            if nk is not None:
                self.queue.appendleft(Job(result.key, p.targets, nk, max_steps=self.planner.steps(nk)))
                return None
            self.planner.learn(p.nats, p.outcomes)
        i = p.text_index
        self.left[i] -= 1
        return None if self.left[i] else i

    def memory(self, i: int) -> Memory:
        """Text `i`'s Memory from its verified pieces."""
        pieces, lm, config = self.of_text[i], self.lm, self.config
        n = [len(p.targets) for p in pieces]
        segments = [{"k": len(p.result.vectors), "tokens": len(p.targets) - 1, "steps": p.steps,
                     **({"tried": p.tried} if config.auto else {})} for p in pieces]
        return Memory(
            vectors=torch.cat([p.result.vectors for p in pieces]), model_name=lm.name,
            model_fingerprint=lm.fingerprint, template=config.template, prefix_ids=list(self.layout.prefix_ids),
            infix_ids=list(self.layout.infix_ids), n_tokens=sum(n) - len(n), text_sha256=sha256_text(self.texts[i]),
            recipe=config.recipe.to_dict(), steps=sum(p.steps for p in pieces),
            seconds=round(sum(p.seconds for p in pieces), 3),
            final_loss=sum(p.result.loss * m for p, m in zip(pieces, n)) / sum(n),
            min_margin=min(p.result.min_margin for p in pieces),
            token_accuracy=sum(p.result.token_accuracy * m for p, m in zip(pieces, n)) / sum(n),
            exact=all(p.exact for p in pieces), text=self.texts[i] if config.keep_text else None,
            storage_dtype=config.dtype, segments=segments)
