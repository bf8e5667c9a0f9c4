"""Cutting a text too long for one memory into segments at natural boundaries.

Each segment gets its own vectors and decodes on its own; the segments concatenated give back the text
byte for byte. Cuts prefer paragraph ends, then line ends, then sentence ends, then spaces, and
fall back to token boundaries only for text with no spaces at all. A cut before a space keeps the
space with the next word, where byte-level BPE tokenizers put it, so a segment tokenizes as it does
inside the whole text.
"""

from __future__ import annotations

import bisect
import re

from ..errors import MemtokError
from ..model.model import FrozenLM

# Cut positions, coarsest first, as (pattern, cut after the match): after a blank line; after a
# newline; before the space after a sentence end; before any space.
_BOUNDARIES = ((r"\n[ \t]*\n+", True), (r"\n", True), (r"(?<=[.!?…。])(?=\s)", False), (r"(?=\s)", False))


def split_text(lm: FrozenLM, text: str, max_tokens: int) -> list[str]:
    """Segments of at most `max_tokens` tokens whose concatenation is `text`."""
    if max_tokens < 1:
        raise MemtokError(f"a segment must hold at least one token, got {max_tokens}")
    segments = []
    while len(lm.tokenize(text)) > max_tokens:
        cut = _cut(lm, text, max_tokens)
        segments.append(text[:cut])
        text = text[cut:]
    return segments + [text] if text else segments


def _fits(lm: FrozenLM, text: str, max_tokens: int) -> bool:
    return len(lm.tokenize(text)) <= max_tokens


def _cut(lm: FrozenLM, text: str, max_tokens: int) -> int:
    """Where to end the next segment: the coarsest boundary giving a segment at least half the budget."""
    fallback = 0
    for pattern, after in _BOUNDARIES:
        cuts = sorted({m.end() if after else m.start() for m in re.finditer(pattern, text)} - {0, len(text)})
        # the token count of text[:p] grows with p: find the last cut that fits
        n = bisect.bisect_right(cuts, 0, key=lambda p: 0 if _fits(lm, text[:p], max_tokens) else 1)
        if n:
            cut = cuts[n - 1]
            if len(lm.tokenize(text[:cut])) * 2 >= max_tokens:
                return cut
            fallback = max(fallback, cut)
    if fallback:
        return fallback
    # no boundary at all: the longest run of whole tokens that decodes to a prefix of the text
    ids = lm.tokenize(text)
    for n in range(max_tokens, 0, -1):
        head = lm.detokenize(ids[:n])
        if head and text.startswith(head):
            return len(head)
    raise MemtokError("cannot cut this text into segments the tokenizer reproduces")
