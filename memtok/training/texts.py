"""A learned start's training text as token pieces, with a record of where every piece came from.

The documents of the named sources (`memtok.training.text_sources`) and any files given are cut into
pieces of a random length in tokens, the lengths a memory's segments have; 1 document in 20 is held
out whole. Tokenising tens of megabytes takes a while, so a training folder keeps its pieces
(`pieces.safetensors`) beside the record of their sources, and reuses them while the sources are
the same.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import MemtokError
from ..files import atomic_write
from ..model.model import FrozenLM
from .text_sources import TEXT_SOURCES

HELD_OUT_EVERY = 20  # one document in this many is held out whole


@dataclass
class Pieces:
    """Training and held-out token pieces, and one line per source saying what it was."""

    train: list[list[int]]
    held: list[list[int]]
    sources: list[str]


def documents(names: list[str], extra: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Every document of the named sources, then the `extra` files' texts; and one record a source:
    name, version, documents, characters and sha256 of the documents in order. A source that is not
    installed is refused, so that the same command trains on the same text everywhere."""
    docs, records = [], []
    for name in names:
        if name not in TEXT_SOURCES:
            raise MemtokError(f"unknown text source {name!r}; choose from {', '.join(TEXT_SOURCES)}")
        version, found = TEXT_SOURCES[name].read()
        some = list(found) if version else []
        if not some:
            raise MemtokError(f"text source {name} is not installed ({TEXT_SOURCES[name].what}): "
                              "make train-text, or leave it out of the sources")
        docs += some
        records.append(_record(f"{name} ({version})", some))
    for label, texts in extra.items():
        docs += texts
        records.append(_record(label, texts))
    return docs, records


def _record(label: str, docs: list[str]) -> str:
    digest = hashlib.sha256("\0".join(docs).encode()).hexdigest()
    return f"{label}: {len(docs)} documents, {sum(map(len, docs))} characters, sha256 {digest[:16]}"


def cut(lm: FrozenLM, docs: list[str], lengths: tuple[int, int], seed: int) -> list[list[int]]:
    """Every document tokenised and cut into consecutive pieces of `lengths[0]..lengths[1]` tokens."""
    rng = random.Random(seed)
    pieces = []
    for doc in docs:
        ids = lm.tokenize(doc)
        at = 0
        while len(ids) - at >= lengths[0]:
            n = rng.randint(*lengths)
            pieces.append(ids[at:at + n])
            at += n
    return pieces


def training_pieces(lm: FrozenLM, names: list[str], extra: dict[str, list[str]], lengths: tuple[int, int],
                    seed: int = 0, cache: Path | None = None) -> Pieces:
    """(train, held out) token pieces of the sources `names` and the `extra` texts (label -> texts):
    no held-out piece shares a document with a training one. With `cache` (a file), pieces cut
    before from the same sources, lengths and tokenizer are read back rather than cut again."""
    docs, records = documents(names, extra)
    if not docs:
        raise MemtokError("no training text: no source and no file given")
    key = json.dumps({"sources": records, "lengths": list(lengths), "seed": seed, "vocab": lm.vocab_size,
                      "model": lm.fingerprint})
    if cache is not None and cache.exists():
        with safe_open(cache, "pt") as f:
            if f.metadata().get("key") == key:
                return Pieces(_unpack(f.get_tensor("train")), _unpack(f.get_tensor("held")), records)
    held = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY == 7]
    train = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != 7]
    pieces = Pieces(cut(lm, train, lengths, seed), cut(lm, held, lengths, seed + 1), records)
    if cache is not None:
        tensors = {"train": _pack(pieces.train), "held": _pack(pieces.held)}
        atomic_write(cache, lambda tmp: save_file(tensors, tmp, metadata={"key": key}))
    return pieces


def _pack(pieces: list[list[int]]) -> torch.Tensor:
    """Pieces as one int32 row: each piece's length, then its ids."""
    return torch.tensor([x for p in pieces for x in (len(p), *p)], dtype=torch.int32)


def _unpack(flat: torch.Tensor) -> list[list[int]]:
    values, pieces, at = flat.tolist(), [], 0
    while at < len(values):
        n = values[at]
        pieces.append(values[at + 1:at + 1 + n])
        at += 1 + n
    return pieces
