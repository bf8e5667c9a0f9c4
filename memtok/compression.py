"""What general-purpose compressors make of a text, to set a memory's bytes beside honestly."""

from __future__ import annotations

import gzip
import lzma


def text_sizes(text: str) -> dict[str, int]:
    """Bytes of the text as UTF-8, and after gzip -9, xz -9 and zstd -19."""
    import zstandard

    raw = text.encode("utf-8")
    return {"utf8": len(raw), "gzip": len(gzip.compress(raw, 9, mtime=0)),
            "xz": len(lzma.compress(raw, preset=9)), "zstd": len(zstandard.ZstdCompressor(level=19).compress(raw))}
