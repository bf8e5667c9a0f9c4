"""Storage precision of memory vectors: what a saved memory holds, and what it decodes from.

A memory saved at lower precision must still decode exactly, so encoding optimises *through* the
rounding (straight-through: the forward pass sees the rounded vector, the gradient updates the
float32 one) and judges exactness on the rounded vector. What is saved is then exactly what was
verified.

The float dtypes and int8 store the input vectors themselves. The low-bit dtypes (`int4`,
`ternary`, `binary`) store levels in the model's own frame: each dimension centred on the mean
input embedding and measured in its spread (both fixed by the model, so they cost no bytes), with
one float16 scale per vector. A memory then holds `levels * scale` per dimension, and the model is
fed `centre + spread * levels * scale`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import MemtokError
from .dtypes import STORAGE, framed


class Frame(NamedTuple):
    """Per-dimension centre and spread of a model's input embeddings, rounded to float16 so that
    machines whose reductions round differently still agree on them."""

    centre: torch.Tensor  # [d] float32
    spread: torch.Tensor  # [d] float32

    def inputs(self, stored: torch.Tensor) -> torch.Tensor:
        """The model's input vectors for a framed memory's stored values."""
        return self.centre.to(stored) + self.spread.to(stored) * stored

    def coordinates(self, vectors: torch.Tensor) -> torch.Tensor:
        return (vectors - self.centre.to(vectors)) / self.spread.to(vectors)


def quantise(u: torch.Tensor, dtype: str) -> torch.Tensor:
    """`u` [K, d] in frame coordinates to the nearest `levels * scale`, one float16 scale per row."""
    levels, step = STORAGE[dtype].levels, STORAGE[dtype].step
    size = u.abs().mean(-1, keepdim=True) if step is None else u.pow(2).mean(-1, keepdim=True).sqrt() * step
    scale = size.clamp(1e-4, 6e4).half().float()
    q = torch.where(u >= 0, 1.0, -1.0) if step is None else torch.round(u / scale).clamp(-levels, levels)
    return q * scale


def stored_form(vectors: torch.Tensor, dtype: str, frame: Frame | None) -> torch.Tensor:
    """What a memory of `dtype` holds for these input vectors (no gradient): the rounded vectors,
    or for a framed dtype the quantised frame coordinates."""
    v = vectors.detach()
    if framed(dtype):  # float32 whatever the model's dtype: levels times a float16 scale are exact in it
        return quantise(frame.coordinates(v.float()), dtype)
    if dtype == "float32":
        return v
    return _rounded(v, dtype)


def _rounded(v: torch.Tensor, dtype: str) -> torch.Tensor:
    """float32 values of `v` as `pack` then `unpack` give them, made on `v`'s own device: every step
    rounds every text's vectors, and a trip through host memory would stop a GPU each time. int8's
    integers are `pack`'s own (`_int8`), so the same bits (`tests/test_memory_file.py` checks)."""
    v = v.float()
    if STORAGE[dtype].scale:
        q, scale = _int8(v)
        return q.float() * scale[:, None]
    return v.to(getattr(torch, dtype)).float()


def _int8(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8's absmax-scaled integers of float32 `v` [K, d], and the scale of each row."""
    scale = v.abs().amax(dim=-1).clamp_min(1e-12) / 127.0
    return torch.round(v / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def model_inputs(stored: torch.Tensor, dtype: str, frame: Frame | None) -> torch.Tensor:
    """The input vectors a memory's stored values stand for."""
    return frame.inputs(stored) if framed(dtype) else stored


def straight_through(vectors: torch.Tensor, dtype: str, frame: Frame | None) -> torch.Tensor:
    """Forward: the vectors as they will be saved; backward: the identity, so float32 vectors keep learning."""
    if dtype == "float32":
        return vectors
    # `v - v.detach()` is exactly zero, so the forward values are the saved ones to the last bit
    saved = model_inputs(stored_form(vectors, dtype, frame), dtype, frame).to(vectors.dtype)
    return saved + (vectors - vectors.detach())


def pack(stored: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """Tensors to save: `memory` in `dtype`; int8 adds a float32 `scale` per vector (absmax / 127);
    framed dtypes save their levels packed into bytes and a float16 `scale` per vector."""
    v = stored.detach().float().cpu()
    if framed(dtype):
        return _pack_levels(v, dtype)
    if STORAGE[dtype].scale:  # int8: absmax-scaled integers
        q, scale = _int8(v)
        return {"memory": q.contiguous(), "scale": scale.contiguous()}
    return {"memory": v.to(getattr(torch, dtype)).contiguous()}


def _pack_levels(v: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """Levels and the scale they were made with, found again from the stored values alone: the
    largest |level| a vector uses gives its scale exactly (a float16 times a small integer)."""
    spec = STORAGE[dtype]
    levels = spec.levels
    scales, codes = [], []
    for row in v:
        top, s = row.abs().max(), torch.tensor(1.0)
        for used in range(levels, 0, -1) if top > 0 else ():  # the vector's largest |level|, from the top
            s = (top / used).half().float()
            if torch.equal(torch.round(row / s) * s, row):
                break
        if not torch.equal(torch.round(row / s) * s, row):
            raise MemtokError(f"these vectors are not the levels of a {dtype} memory")
        scales.append(s)
        codes.append(torch.round(row / s))
    q = torch.stack(codes)
    digits = (q > 0).long() if spec.base % 2 == 0 else (q + levels).long()
    return {"memory": _to_bytes(digits, spec.base, spec.digits_per_byte),
            "scale": torch.stack(scales).half()}


def _to_bytes(digits: torch.Tensor, base: int, per_byte: int) -> torch.Tensor:
    """[K, d] digits in 0..base-1 as [K, ceil(d / per_byte)] uint8, `per_byte` digits a byte, first lowest."""
    k, d = digits.shape
    width = -(-d // per_byte)
    padded = torch.zeros(k, width * per_byte, dtype=torch.long)
    padded[:, :d] = digits
    weights = base ** torch.arange(per_byte)
    return (padded.view(k, width, per_byte) * weights).sum(-1).to(torch.uint8)


def _from_bytes(packed: torch.Tensor, base: int, per_byte: int, d: int) -> torch.Tensor:
    b = packed.long()[..., None] // (base ** torch.arange(per_byte)) % base
    return b.reshape(packed.shape[0], -1)[:, :d]


def unpack(tensors: dict[str, torch.Tensor], dtype: str | None = None, hidden: int | None = None) -> torch.Tensor:
    """float32 stored values from saved tensors (framed dtypes need their `dtype` and `hidden` size)."""
    m = tensors["memory"]
    if dtype is not None and framed(dtype):
        spec = STORAGE[dtype]
        digits = _from_bytes(m, spec.base, spec.digits_per_byte, hidden).float()
        q = digits * 2 - 1 if spec.base % 2 == 0 else digits - spec.levels
        return q * tensors["scale"].float()[:, None]
    if m.dtype == torch.int8:
        return m.float() * tensors["scale"].float()[:, None]
    return m.float()


def nbytes(k: int, d: int, dtype: str) -> int:
    """Bytes of `k` saved vectors of `d` numbers of `dtype`, scales included."""
    return STORAGE[dtype].nbytes(k, d)
