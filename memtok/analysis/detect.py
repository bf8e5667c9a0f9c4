"""Is an input vector a token's embedding, or something else (a memory, a soft prompt)?

A service that takes raw input vectors (`inputs_embeds`) can be handed a memory, which makes an
instruction-tuned model say whatever text it was made for, without a word of prompt. An ordinary
token's input vector is a row of the model's embedding matrix (as the model's own lookup returns
it), so the check is the distance to the nearest row, relative to that row's norm: zero for a
token, small for a token's vector rounded to a lower precision on its way, and large for a
memory, whose optimisation never looks at the rows. The threshold is set from rounding alone
(`THRESHOLD`), not from memories, so the memories it is measured on were never used to pick it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..model.model import FrozenLM

# bfloat16 keeps 8 significant bits: a row rounded to it moves by at most 2^-8 of each element,
# under 2^-8 (0.0039) of its norm; float16 and 8-bit absmax rounding move less. Twice bfloat16's
# bound leaves room for a token vector that went through two roundings.
THRESHOLD = 2 * 2.0 ** -8
CHUNK = 8192  # vocabulary rows compared at once


@dataclass(frozen=True)
class Finding:
    index: int  # which input vector
    nearest_token: int  # the vocabulary row nearest to it
    distance: float  # to that row, relative to the row's norm
    norm_ratio: float  # its norm / the median norm of the vocabulary's rows
    token_like: bool  # distance <= the threshold

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def nearest_rows(rows: torch.Tensor, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each vector [n, d]: the index of its nearest row (Euclidean) and the distance to it, relative
    to that row's norm. Distances are recomputed exactly for the winner: the expanded form
    |v|^2 + |e|^2 - 2 v.e loses the small ones to cancellation."""
    vectors = vectors.float().to(rows.device)
    best = torch.full((len(vectors),), torch.inf, device=rows.device)
    arg = torch.zeros(len(vectors), dtype=torch.long, device=rows.device)
    for s in range(0, len(rows), CHUNK):
        part = rows[s:s + CHUNK]
        d2 = (vectors * vectors).sum(1, keepdim=True) + (part * part).sum(1)[None] - 2 * vectors @ part.T
        value, index = d2.min(1)
        better = value < best
        best, arg = torch.where(better, value, best), torch.where(better, index + s, arg)
    exact = (vectors - rows[arg]).norm(dim=1) / rows[arg].norm(dim=1).clamp_min(1e-12)
    return arg.cpu(), exact.cpu()


def detect(lm: FrozenLM, vectors: torch.Tensor, threshold: float = THRESHOLD,
           rows: torch.Tensor | None = None) -> list[Finding]:
    """A `Finding` per input vector [n, d] (in the model's input space, as `inputs_embeds` takes them)."""
    rows = lm.vocabulary if rows is None else rows
    index, distance = nearest_rows(rows, vectors)
    median = float(rows.norm(dim=1).median())
    norms = vectors.float().norm(dim=1).cpu() / median
    return [Finding(i, int(t), float(d), float(r), bool(d <= threshold))
            for i, (t, d, r) in enumerate(zip(index, distance, norms))]


def snapped(rows: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """The obvious defence: every input vector replaced by its nearest vocabulary row."""
    index, _ = nearest_rows(rows, vectors)
    return rows[index.to(rows.device)].to(vectors.dtype)
