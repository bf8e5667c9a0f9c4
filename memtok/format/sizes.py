"""What a memory costs beside what compressors make of its text, and beside the model's own bound.

The bound is the text's cross-entropy under the same model with no memory: what an arithmetic
coder driven by the model would need, and so the least any memory of that model can hold the
text in. `payload_bytes` counts what one more text costs in a store: the saved numbers and their
scales, and the per-text fields decoding and its self-check need (K and text tokens per segment,
and a 4-byte checksum of the text, where a store keeps the full sha256 today).
"""

from __future__ import annotations

import gzip
import lzma
import math

CHECKSUM_BYTES = 4
SEGMENT_BYTES = 3  # K (1 byte) and text tokens (2 bytes) of each segment


def text_sizes(text: str) -> dict[str, int]:
    """Bytes of the text as UTF-8, and after gzip -9, xz -9 and zstd -19."""
    import zstandard

    raw = text.encode("utf-8")
    return {"utf8": len(raw), "gzip": len(gzip.compress(raw, 9, mtime=0)),
            "xz": len(lzma.compress(raw, preset=9)), "zstd": len(zstandard.ZstdCompressor(level=19).compress(raw))}


def payload_bytes(vector_bytes: int, segments: int) -> int:
    return vector_bytes + CHECKSUM_BYTES + SEGMENT_BYTES * max(1, segments)


def size_figures(payload: int, sizes: dict[str, int] | None, entropy_bits: float | None) -> dict:
    """A memory's payload beside its text: bits per byte of text, and ratios to zstd and to the bound."""
    out: dict = {"payload_bytes": payload}
    if sizes:
        out.update({f"{name}_bytes": n for name, n in sizes.items()},
                   bits_per_byte=round(8 * payload / sizes["utf8"], 3), to_zstd=round(payload / sizes["zstd"], 3))
    if entropy_bits:
        out.update(entropy_bytes=math.ceil(entropy_bits / 8), to_entropy=round(8 * payload / entropy_bits, 3))
        if sizes:
            out["entropy_bits_per_byte"] = round(entropy_bits / sizes["utf8"], 3)
    return out
