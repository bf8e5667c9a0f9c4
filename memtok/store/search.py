"""Find the memories that hold a passage, without their texts.

Two ways, both read-only over a store's memories:

- `likelihood` (query likelihood, as UPR and LLM rankers score a document by the model's
  probability of the query given it): the frozen model reads a memory's vectors in their own
  prompt and then the query; the score is the mean log-probability of the query's tokens but the
  first (`SCORINGS` has the others). A memory cut into segments scores as its best segment, since a
  passage lives in one of them.
- `vector`, for memories made with `--semantic`: the query's code (its embedding by the teacher the
  memories record, `memtok.start.semantic`) against each memory's component in the semantic subspace, by
  cosine; the best segment's is the memory's. No model pass over the memories at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..codec import MemoryCodec
from ..errors import MemtokError
from ..format.memory import Memory
from ..model.layout import Layout
from ..start.semantic import SemanticSpace, space_of

METHODS = ("likelihood", "vector")


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str | None = None  # the decoded text, when asked for and only when its sha256 is the memory's
    mismatch: bool = False  # decoding was asked for and gave a text whose sha256 is not the memory's


def query_ids(codec: MemoryCodec, query: str) -> list[int]:
    if not isinstance(query, str) or not query.strip():
        raise MemtokError("an empty query matches nothing")
    return codec.lm.tokenize(query)


@torch.no_grad()
def token_logprobs(codec: MemoryCodec, memories: Sequence[Memory], query: str, batch_size: int = 64,
                   on_batch: Callable[[int], None] | None = None) -> tuple[list[int], torch.Tensor]:
    """The model's log-probability of each query token after each segment's vectors, in the
    memory's prompt: which memory each segment is of, and a [segments, query tokens] tensor. Every
    way of scoring reads this one pass."""
    lm, ids = codec.lm, query_ids(codec, query)
    # every segment of every memory, grouped by what shares a batch: its layout (the prompt and K)
    groups: dict[Layout, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    for i, layout, inputs, _ in codec.segments(memories):
        groups[layout].append((i, inputs))
    owners, rows = [], []
    target = torch.tensor(ids, device=lm.device)
    for layout, items in groups.items():
        for start in range(0, len(items), batch_size):
            part = items[start:start + batch_size]
            x = torch.stack([layout.inputs(lm, v, target[:-1]) for _, v in part])
            logits = lm.logits(x, layout.first_target)
            rows.append(-F.cross_entropy(logits.transpose(1, 2), target.expand(len(part), -1), reduction="none").cpu())
            owners += [i for i, _ in part]
            if on_batch is not None:
                on_batch(len(part))
    return owners, torch.cat(rows)


def _mean(logp: torch.Tensor) -> torch.Tensor:
    return logp.mean(1)


def _skip1(logp: torch.Tensor) -> torch.Tensor:
    """Right after its vectors a memory predicts its text's first token, not a passage's."""
    return logp[:, min(1, logp.shape[1] - 1):].mean(1)


def _z(logp: torch.Tensor) -> torch.Tensor:
    """Each token's log-probability standardised across the store's segments, then averaged: a
    token every memory predicts alike (read from the query itself) weighs no more than one only
    the right memory predicts."""
    spread = logp.std(0, unbiased=False).clamp_min(1e-6)
    return ((logp - logp.mean(0)) / spread).mean(1)


SCORINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"mean": _mean, "skip1": _skip1, "z": _z}


def best_per_memory(owners: Sequence[int], segment_scores: torch.Tensor, n: int) -> list[float]:
    """A memory cut into segments scores as its best segment, since a passage lives in one."""
    best = [-float("inf")] * n
    for i, s in zip(owners, segment_scores.tolist()):
        best[i] = max(best[i], s)
    return best


def likelihood_scores(codec: MemoryCodec, memories: Sequence[Memory], query: str, batch_size: int = 64,
                      on_batch: Callable[[int], None] | None = None, scoring: str = "skip1") -> list[float]:
    """Per memory: its best segment's score of the query's tokens (`SCORINGS`; the default, 'skip1',
    found a passage first most often in `bench/retrieval.py`)."""
    if scoring not in SCORINGS:
        raise MemtokError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
    owners, logp = token_logprobs(codec, memories, query, batch_size, on_batch)
    return best_per_memory(owners, SCORINGS[scoring](logp), len(memories))


def memories_space(codec: MemoryCodec, described: Sequence[dict | None], teacher: str | None = None
                   ) -> SemanticSpace:
    """The semantic space these memories' codes are in (`memtok.start.semantic.space_of`), refused
    in one line in the command line's words."""
    try:
        return space_of(codec.lm, described, teacher)
    except MemtokError as exc:
        raise MemtokError(str(exc).replace("search by likelihood", "use --method likelihood")
                          .replace("leave out teacher", "leave out --teacher")) from None


def segment_keys(codec: MemoryCodec, memories: Sequence[Memory], space: SemanticSpace
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Every segment's key for a vector search: which memory it is of [S], and its component in the
    semantic subspace, normalised [S, r]."""
    owners, keys = zip(*[(i, space.component(inputs)) for i, _, inputs, _ in codec.segments(memories)])
    return torch.tensor(owners), F.normalize(torch.stack(keys).float().cpu(), dim=1)


def query_code(codec: MemoryCodec, space: SemanticSpace, query: str) -> torch.Tensor:
    """[r]: the query's code, normalised: one pass of the teacher over the query."""
    code = space.codes(codec.lm, [query_ids(codec, query)])[0]
    return F.normalize(code.float().cpu(), dim=0)


def best_cosines(owners: torch.Tensor, keys: torch.Tensor, code: torch.Tensor, n: int) -> torch.Tensor:
    """[n]: per memory, its best segment's cosine with the query's code (a passage lives in one
    segment). One matrix-vector product over the keys: exact, under 1 ms over 100k keys here
    (`bench/vector_index.py`)."""
    cosines = keys @ code.to(keys)
    return torch.full((n,), -float("inf")).scatter_reduce(0, owners, cosines, "amax")


def vector_scores(codec: MemoryCodec, memories: Sequence[Memory], query: str, teacher: str | None = None
                  ) -> list[float]:
    """Per semantic memory (`memtok.start.semantic`): the cosine between the query's code and its best
    segment's component in the semantic subspace. No pass of the model over the memories."""
    space = memories_space(codec, [m.semantic for m in memories], teacher)
    owners, keys = segment_keys(codec, memories, space)
    return best_cosines(owners, keys, query_code(codec, space, query), len(memories)).tolist()


def top(scores: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """(position, score) of the `n` best, best first."""
    best = torch.topk(scores.float(), min(n, len(scores)))
    return list(zip(best.indices.tolist(), best.values.tolist()))
