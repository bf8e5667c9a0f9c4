"""Semantic memories: a memory whose vectors are also a sentence embedding of its text, still exact.

A text has many exact memories (the solutions form connected regions), so one can be chosen that
also carries meaning. memtok fixes a subspace of r dimensions of the input space (`RANK`, or an
eighth of a smaller model's) and sets every memory vector's component there to its segment's
*code* (a text cut into segments carries one code per segment): a teacher's embedding of the
segment (`memtok.start.teachers`), projected to r numbers by a fixed random matrix (which keeps cosines,
Johnson-Lindenstrauss) and scaled to a token's size. The optimiser moves only in the rest of the
space. A vector search then ranks memories by the cosine of their component in the subspace with
the query's code, without texts and without decoding.

The subspace and the projection are drawn from fixed seeds and the sizes, so they are the same on
every machine; the subspace is the model's whatever the teacher. A memory records its space,
teacher by name and weights (`SemanticSpace.describe`); a search refuses memories of another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import MemtokError
from ..model.model import FrozenLM
from ..settings.config import ALIASES
from .teachers import Teacher, get_teacher

RANK = 64  # dimensions of the input space that carry the text's code: at most this, and an eighth of the space
SEED = 0


def subspace(lm: FrozenLM, most: int = RANK) -> tuple[torch.Tensor, float]:
    """The model's subspace for codes, [d, r] with orthonormal columns (r: `most`, and at most an
    eighth of the space), and a code's norm there (a token's size in r dimensions)."""
    d = lm.hidden_size
    rank = min(most, d // 8)
    if rank < 2:
        raise MemtokError(f"model {lm.name} has {d} dimensions: too few to keep some for a semantic code")
    gen = torch.Generator().manual_seed(SEED)
    basis = torch.linalg.qr(torch.randn(d, rank, generator=gen, dtype=torch.float64))[0].float()
    return basis.to(lm.device), lm.embedding_std * rank ** 0.5


def place(basis: torch.Tensor, vectors: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """`vectors` [..., K, d] with their component in the subspace replaced by `code` [..., 1 or K, r];
    a gradient reaches only the rest of the space."""
    basis = basis.to(vectors.dtype)
    return vectors - (vectors @ basis) @ basis.T + (code.to(vectors.dtype) @ basis.T)


@dataclass(frozen=True)
class SemanticSpace:
    """Where a model's memories keep their text's code, and how a text becomes one."""

    basis: torch.Tensor  # [d, r], orthonormal columns: the subspace
    projection: torch.Tensor  # [r, teacher's dimensions]: teacher embedding -> code
    teacher: Teacher
    scale: float  # the code's norm: a token's size in r dimensions

    @classmethod
    def of(cls, lm: FrozenLM, teacher: str | Teacher | None = None, rank: int = RANK) -> SemanticSpace:
        """The model's space with `teacher` (a name of `memtok.start.teachers`; None: the default), of at
        most `rank` dimensions (`RANK` is what memories are made with; another rank is for studies)."""
        teacher = teacher if isinstance(teacher, Teacher) else get_teacher(lm, teacher)
        basis, scale = subspace(lm, rank)
        gen = torch.Generator().manual_seed(SEED)
        torch.randn(lm.hidden_size, basis.shape[1], generator=gen, dtype=torch.float64)  # the basis's draw, then:
        projection = torch.randn(basis.shape[1], teacher.dim, generator=gen, dtype=torch.float64).float()
        return cls(basis, (projection / basis.shape[1] ** 0.5).to(lm.device), teacher, scale)

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def describe(self) -> dict:
        """What a memory records, and what a search compares: the same description, the same space."""
        return {**self.teacher.describe(), "rank": self.rank, "seed": SEED, "scale": round(self.scale, 6)}

    @torch.no_grad()
    def codes(self, lm: FrozenLM, texts: list[list[int]]) -> torch.Tensor:
        """[B, r] codes of these texts (token ids, no EOS): the teacher's embeddings, projected and
        scaled to `scale`."""
        embeddings = self.teacher.embed(lm, texts).to(self.projection)
        codes = embeddings @ self.projection.T
        return codes / codes.norm(dim=-1, keepdim=True).clamp_min(1e-12) * self.scale

    def place(self, vectors: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """`vectors` [K, d] with their component in the subspace replaced by `code` [r]."""
        return place(self.basis, vectors, code)

    def component(self, vectors: torch.Tensor) -> torch.Tensor:
        """[r]: the mean over `vectors` [K, d] of their component in the subspace."""
        return (vectors.to(self.basis) @ self.basis).mean(0)


def space_of(lm: FrozenLM, described: Sequence[dict | None], teacher: str | None = None) -> SemanticSpace:
    """The semantic space these memories' codes are in (`Memory.semantic`), rebuilt from what they
    record. Refused in one line: memories that are not semantic or not of one space, a `teacher`
    other than theirs, or their teacher's name with other weights (or another model's space)."""
    if not described or any(d is None for d in described):
        raise MemtokError("a vector search or an embedding needs memories made with semantic=TEACHER; these are "
                          "plain (their vectors are no similarity embedding): search by likelihood")
    if any(d != described[0] for d in described):
        raise MemtokError("these memories hold codes of more than one teacher or space: search them apart")
    recorded = described[0]
    if teacher is not None and ALIASES.get(teacher, teacher) != recorded["teacher"]:
        raise MemtokError(f"these memories were taught by {recorded['teacher']}, not {teacher}: their codes and the "
                          f"query's would not compare (leave out teacher)")
    space = SemanticSpace.of(lm, recorded["teacher"])
    if space.describe() != recorded:
        raise MemtokError(f"these memories' codes are of another space than {lm.name} with "
                          f"{recorded['teacher']} as installed here (other teacher weights or sizes)")
    return space
