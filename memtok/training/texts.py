"""Training text for a learned start: real text this machine has without a network.

Never the paper's evaluation rows: the sources are CPython's own documentation
(`pydoc_data.topics`), the multilingual dialogues of `chatterbot-corpus` when installed, and any
files given (e.g. rows 100+ of `raschka_chunks_100.csv`, by `--extra FILE --rows 100:`). Each
document is cut into pieces of a random length in tokens, the lengths a memory's segments have.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from pathlib import Path

from ..model.model import FrozenLM


def pydoc_topics() -> Iterator[str]:
    """CPython's help topics (~465 KB of English prose and code)."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]


def chatterbot_files(language: str = "*") -> list[Path]:
    """chatterbot-corpus's YAML files (of one language, a folder name such as 'spanish'); none when
    it is not installed."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "data").glob(f"{language}/*.yml"))


def chatterbot_dialogues() -> Iterator[str]:
    """The lines of chatterbot-corpus's YAML files, one document per file (many languages)."""
    for path in chatterbot_files():
        lines = [ln.strip().lstrip("- ").strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        text = " ".join(ln for ln in lines if ln and not ln.endswith(":") and not ln.startswith("#"))
        if text:
            yield text


def cut(lm: FrozenLM, documents: list[str], lengths: tuple[int, int], seed: int) -> list[list[int]]:
    """Every document tokenised and cut into consecutive pieces of `lengths[0]..lengths[1]` tokens."""
    rng = random.Random(seed)
    pieces = []
    for doc in documents:
        ids = lm.tokenize(doc)
        at = 0
        while len(ids) - at >= lengths[0]:
            n = rng.randint(*lengths)
            pieces.append(ids[at:at + n])
            at += n
    return pieces


def sources(extra_names: list[str]) -> list[str]:
    """Where the training text comes from, as a start file records it: package and file."""
    import sys

    found = [f"pydoc_data.topics (CPython {sys.version.split()[0]})"]
    if chatterbot_files():
        from importlib.metadata import version

        found.append(f"chatterbot-corpus {version('chatterbot-corpus')} (data/*/*.yml, every language)")
    return found + extra_names


def training_pieces(lm: FrozenLM, extra: list[str], lengths: tuple[int, int], seed: int = 0
                    ) -> tuple[list[list[int]], list[list[int]]]:
    """(train, held out) token pieces: 1 document in 20 is held out whole, so no held-out piece
    shares a document with a training one."""
    docs = [*pydoc_topics(), *chatterbot_dialogues(), *extra]
    held = [d for i, d in enumerate(docs) if i % 20 == 7]
    train = [d for i, d in enumerate(docs) if i % 20 != 7]
    return cut(lm, train, lengths, seed), cut(lm, held, lengths, seed + 1)
