"""What the encode loop runs next, and what it has finished: the schedules of one call.

The loop (`memtok.encode.optimise.encode_loop`) takes jobs from a schedule as slots free up and tells it
each verified try; the schedule alone decides what comes next (a retry with more vectors jumps the
queue) and gives back what is complete. `TextSchedule` is `MemoryCodec.encode`'s: the texts cut
into segments that fit the model, the vectors each gets (`memtok.encode.plan`), and each text's `Memory` put
together once its last segment has settled. `IdSchedule` is `encode_ids`': one try per sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..decode.score import entropy_bits
from ..errors import MemtokError
from ..format.header import sha256_text
from ..format.memory import Memory
from ..format.sizes import text_sizes
from ..model.model import FrozenLM
from ..settings.recipes import Init
from .jobs import Job, JobQueue, Optimised
from .plan import Segment
from .resolved import Resolved
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


class IdSchedule(JobQueue):
    """`config.k` vectors for each token-id sequence, one try each: (index, result, exact) as each settles."""

    def __init__(self, targets: Sequence[list[int]], resolved: Resolved) -> None:
        if not resolved.config.fixed:
            raise MemtokError(f"encode_ids takes a number of vectors, not {resolved.config.k!r}")
        super().__init__(Job(i, list(t), resolved.config.k) for i, t in enumerate(targets))

    def settle(self, result: Optimised, exact: bool) -> tuple[int, Optimised, bool]:
        return result.key, result, exact

    def label(self, key: int) -> dict:
        return {"text": key}


class TextSchedule(JobQueue):
    """The segments of a list of texts, their jobs, and which texts are complete."""

    def __init__(self, lm: FrozenLM, texts: list[str], resolved: Resolved) -> None:
        super().__init__()
        self.lm, self.texts, self.resolved, self.config = lm, texts, resolved, resolved.config
        self.layout = resolved.layout
        self.policy = resolved.policy.for_run()  # a search learns within this call only
        self.limit = resolved.segment_limit
        self.segments = self._cut()
        self.of_text: list[list[Segment]] = [[] for _ in texts]
        for p in self.segments:
            self.of_text[p.text_index].append(p)
        self.left = [len(group) for group in self.of_text]  # segments of each text not yet settled
        self._queue_first_tries()

    def describe(self) -> str:
        """How the texts were cut, for a person to read."""
        n, longest = len(self.segments), max(len(p.targets) - 1 for p in self.segments)
        recipe = self.config.recipe
        start = f", from {self.resolved.start_name}" if recipe.init is Init.LEARNED else ""
        space = self.resolved.semantic
        taught = "" if space is None else f"; semantic, taught by {space.teacher.name}"
        return (f"{n} segment{'s' * (n > 1)} of at most {self.limit} tokens (cut at natural boundaries), "
                f"{self.policy.describe(longest)}; recipe {recipe.name}{start}{taught}")

    def _cut(self) -> list[Segment]:
        """Each text, cut where it must be (or where asked) into segments that fit the model."""
        segments = []
        for i, text in enumerate(self.texts):
            target_ids(self.lm, text)  # checks the whole text first, for a clear error
            segments += [Segment(i, cut, target_ids(self.lm, cut)) for cut in split_text(self.lm, text, self.limit)]
        return segments

    def _queue_first_tries(self) -> None:
        """First tries, text by text, the text with the longest segment first: the long texts start
        early and the short ones fill the tail, and a text's segments run together, so texts finish
        (and an eval records them) one after another, not all at the end, and a run stopped
        part-way loses only the settled segments of the texts in flight. Retries join as tries settle."""
        longest = [max(len(p.targets) for p in group) for group in self.of_text]
        for key in sorted(range(len(self.segments)), key=lambda j: (-longest[self.segments[j].text_index],
                                                                  self.segments[j].text_index)):
            p = self.segments[key]
            first = self.policy.first(p)
            self.put(Job(key, p.targets, first.k, max_steps=first.max_steps))

    def settle(self, result: Optimised, exact: bool) -> tuple[int, Memory] | None:
        """Record a verified try: a text's index and `Memory` once its last segment has settled, else None.

        A try may call for another (queued first, so that no text is left half-done for long), and
        the segment is not settled yet.
        """
        p = self.segments[result.key]
        p.add_try(result, exact)
        again = self.policy.next(p, result.loss)
        if again is not None:
            self.put_first(Job(result.key, p.targets, again.k, max_steps=again.max_steps))
            return None
        i = p.text_index
        self.left[i] -= 1
        return None if self.left[i] else (i, self._memory(i))

    def _memory(self, i: int) -> Memory:
        """Text `i`'s memory, from its settled segments. Exact: greedy decoding gave each segment's ids
        and EOS, which `target_ids` checked detokenize back to the segment byte for byte."""
        own, lm, config = self.of_text[i], self.lm, self.config
        n = [len(p.targets) for p in own]
        records = [{"k": len(p.result.vectors), "tokens": len(p.targets) - 1, "steps": p.steps,
                    **({} if config.fixed else {"tried": p.tried}),
                    **({} if config.recipe.restart_after is None else {"restarts": p.restarts})} for p in own]
        return Memory(
            vectors=torch.cat([p.result.vectors for p in own]), model_name=lm.name, model_source=lm.source,
            model_fingerprint=lm.fingerprint, template=self.layout.template or config.template,
            prefix_ids=list(self.layout.prefix_ids),
            infix_ids=list(self.layout.infix_ids), n_tokens=sum(n) - len(n), text_sha256=sha256_text(self.texts[i]),
            recipe=config.recipe.to_dict(), steps=sum(p.steps for p in own),
            seconds=round(sum(p.seconds for p in own), 3),
            # its first segment's first pass to its last segment's last: segments run side by side
            elapsed_seconds=round(max(p.ended for p in own) - min(p.began for p in own), 3),
            final_loss=sum(p.result.loss * m for p, m in zip(own, n)) / sum(n),
            min_margin=min(p.result.min_margin for p in own),
            token_accuracy=sum(p.result.token_accuracy * m for p, m in zip(own, n)) / sum(n),
            exact=all(p.exact for p in own), text=self.texts[i] if config.keep_text else None,
            storage_dtype=config.storage, segments=records, text_sizes=text_sizes(self.texts[i]),
            start=self.resolved.start_name,
            semantic=None if self.resolved.semantic is None else self.resolved.semantic.describe(),
            entropy_bits=round(entropy_bits(lm, self.layout, target_ids(lm, self.texts[i])), 2))

    def label(self, key: int) -> dict:
        """What a job is known by outside: its text's index and its place among that text's segments."""
        p = self.segments[key]
        return {"text": p.text_index, "segment": next(j for j, q in enumerate(self.of_text[p.text_index]) if q is p)}
