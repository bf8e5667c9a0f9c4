"""Semantic memories: a memory whose vectors are also a sentence embedding of its text, still exact.

A text has many exact memories (the solutions form connected regions), so one can be chosen that
also carries meaning. memtok fixes a subspace of r dimensions of the input space (`RANK`, or an
eighth of a smaller model's) and sets every memory vector's component there to its segment's
*code* (a text cut into segments carries one code per segment): a teacher's embedding of the
segment, projected to r numbers by a fixed random matrix (which keeps cosines,
Johnson-Lindenstrauss) and scaled to a token's size. The optimiser moves only in the rest of the space. A vector search then ranks
memories by the cosine of their component in the subspace with the query's code, without texts and
without decoding.

The teacher is the frozen model itself: its hidden states at its middle layer, mean-pooled over the
segment, so no second model is needed and any language it reads is covered. The subspace and the
projection are drawn from fixed seeds and the model's sizes, so they are the same on every machine,
and a memory records them (`SemanticSpace.describe`); a search refuses memories of another space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import MemtokError
from .model import FrozenLM
from .start import text_features

RANK = 64  # dimensions of the input space that carry the text's code: at most this, and an eighth of the space
SEED = 0
TEACHER = "self-middle-mean"  # the frozen model's middle-layer hidden states, mean-pooled over the text


@dataclass(frozen=True)
class SemanticSpace:
    """Where a model's memories keep their text's code, and how a text becomes one."""

    basis: torch.Tensor  # [d, r], orthonormal columns: the subspace
    projection: torch.Tensor  # [r, d]: teacher embedding -> code
    layer: int  # the teacher's depth (a hidden-states index)
    scale: float  # the code's norm: a token's size in r dimensions

    @classmethod
    def of(cls, lm: FrozenLM) -> SemanticSpace:
        d, n_layers = lm.hidden_size, lm.model.config.num_hidden_layers
        rank = min(RANK, d // 8)
        if rank < 2:
            raise MemtokError(f"model {lm.name} has {d} dimensions: too few to keep some for a semantic code")
        gen = torch.Generator().manual_seed(SEED)
        basis = torch.linalg.qr(torch.randn(d, rank, generator=gen, dtype=torch.float64))[0].float()
        projection = torch.randn(rank, d, generator=gen, dtype=torch.float64).float() / rank ** 0.5
        return cls(basis.to(lm.device), projection.to(lm.device), n_layers // 2, lm.embedding_std * rank ** 0.5)

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def describe(self) -> dict:
        """What a memory records, and what a search compares: the same description, the same space."""
        return {"teacher": TEACHER, "layer": self.layer, "rank": self.rank, "seed": SEED,
                "scale": round(self.scale, 6)}

    @torch.no_grad()
    def codes(self, lm: FrozenLM, texts: list[list[int]]) -> torch.Tensor:
        """[B, r] codes of these texts (token ids, no EOS): the teacher's embeddings (the pooling
        the learned start reads), projected and scaled to `scale`."""
        embeddings = text_features(lm, texts, (self.layer,)).to(self.projection)
        codes = embeddings @ self.projection.T
        return codes / codes.norm(dim=-1, keepdim=True).clamp_min(1e-12) * self.scale

    def place(self, vectors: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """`vectors` [K, d] with their component in the subspace replaced by `code` [r]; a gradient
        reaches only the rest of the space."""
        basis = self.basis.to(vectors.dtype)
        return vectors - (vectors @ basis) @ basis.T + (code.to(vectors.dtype) @ basis.T)

    def component(self, vectors: torch.Tensor) -> torch.Tensor:
        """[r]: the mean over `vectors` [K, d] of their component in the subspace."""
        return (vectors.to(self.basis) @ self.basis).mean(0)
