"""Find the memories that hold a passage, without their texts.

Two ways, both read-only over a store's memories:

- `likelihood` (query likelihood, as UPR and LLM rankers score a document by the model's
  probability of the query given it): the frozen model reads a memory's vectors in their own
  prompt and then the query; the score is the mean log-probability of the query's tokens. A memory
  cut into segments scores as its best segment, since a passage lives in one of them.
- `vector`: the query is itself made into a memory (one vector) and compared by cosine with each
  memory's mean input vector. Equally good solutions for one text may lie far apart, so this
  tests whether the vectors carry the text's content at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..codec import MemoryCodec
from ..errors import MemtokError
from ..layout import Layout
from ..memory import Memory

METHODS = ("likelihood", "vector")


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    text: str | None = None  # the decoded text, when asked for


def query_ids(codec: MemoryCodec, query: str) -> list[int]:
    if not isinstance(query, str) or not query.strip():
        raise MemtokError("an empty query matches nothing")
    return codec.lm.tokenize(query)


@torch.no_grad()
def likelihood_scores(codec: MemoryCodec, memories: Sequence[Memory], query: str, batch_size: int = 64,
                      on_batch: Callable[[int], None] | None = None, skip: int = 0) -> list[float]:
    """Per memory: the best of its segments' mean log-probability of the query's tokens after the
    segment's vectors, in the memory's prompt; the first `skip` query tokens are read but not scored
    (right after its vectors a memory predicts its text's first token, not a passage's)."""
    lm, ids = codec.lm, query_ids(codec, query)
    q = lm.embed(torch.tensor(ids, device=lm.device))
    # every segment of every memory, grouped by what shares a batch: the prompt and K
    groups: dict[tuple, list[tuple[int, torch.Tensor]]] = defaultdict(list)
    for i, mem in enumerate(memories):
        for vectors, _ in mem.segment_vectors():
            groups[(tuple(mem.prefix_ids), tuple(mem.infix_ids), len(vectors))].append(
                (i, codec.inputs(vectors, mem.storage_dtype)))
    best = [-float("inf")] * len(memories)
    for (prefix, infix, k), items in groups.items():
        layout = Layout(prefix, infix, k)
        for start in range(0, len(items), batch_size):
            part = items[start:start + batch_size]
            weight = lm.model.get_input_embeddings().weight
            context = torch.stack([layout.context(lm, v.to(weight.device, weight.dtype)) for _, v in part])
            x = torch.cat([context, q[:-1].expand(len(part), -1, -1)], dim=1)
            logits = lm.model(inputs_embeds=x, use_cache=False).logits[:, context.shape[1] - 1:].float()
            target = torch.tensor(ids, device=lm.device).expand(len(part), -1)
            scored = -F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
            logp = scored[:, min(skip, len(ids) - 1):].mean(1)
            for (i, _), score in zip(part, logp.tolist()):
                best[i] = max(best[i], score)
            if on_batch is not None:
                on_batch(len(part))
    return best


def mean_vector(codec: MemoryCodec, mem: Memory) -> torch.Tensor:
    return codec.inputs(mem.vectors, mem.storage_dtype).float().mean(0)


def vector_scores(codec: MemoryCodec, memories: Sequence[Memory], query: str, max_steps: int | None = None
                  ) -> list[float]:
    """Per memory: the cosine between its mean input vector and that of a one-vector memory of the
    query (made with at most `max_steps` steps: the recipe's by default)."""
    query_ids(codec, query)
    probe = codec.encode(query, k=1, max_steps=max_steps, show_progress_bar=False)
    q = mean_vector(codec, probe)
    keys = torch.stack([mean_vector(codec, m) for m in memories])
    return F.cosine_similarity(keys, q[None], dim=1).tolist()


def top(ids: Sequence[str], scores: Sequence[float], n: int) -> list[Hit]:
    order = sorted(range(len(ids)), key=lambda j: -scores[j])[:n]
    return [Hit(ids[j], scores[j]) for j in order]
