"""Storage precision of memory vectors: what a saved memory holds, and what it decodes from.

A memory saved at lower precision must still decode exactly, so encoding optimises *through* the
rounding (straight-through: the forward pass sees the rounded vector, the gradient updates the
float32 one) and judges exactness on the rounded vector. What is saved is then exactly what was
verified.
"""

from __future__ import annotations

import torch

from .errors import MemtokError

DTYPES = ("float32", "float16", "bfloat16", "int8")
_FLOAT = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise MemtokError(f"unknown storage dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype


def pack(vectors: torch.Tensor, dtype: str) -> dict[str, torch.Tensor]:
    """Tensors to save: `memory` in `dtype`; int8 adds a float32 `scale` per vector (absmax / 127)."""
    v = vectors.detach().float().cpu()
    if dtype == "int8":
        scale = v.abs().amax(dim=-1).clamp_min(1e-12) / 127.0
        q = torch.round(v / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return {"memory": q.contiguous(), "scale": scale.contiguous()}
    return {"memory": v.to(_FLOAT[check_dtype(dtype)]).contiguous()}


def unpack(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """float32 vectors from saved tensors."""
    m = tensors["memory"]
    if m.dtype == torch.int8:
        return m.float() * tensors["scale"].float()[:, None]
    return m.float()


def rounded(vectors: torch.Tensor, dtype: str) -> torch.Tensor:
    """The float32 values `vectors` take once saved as `dtype` (no gradient)."""
    if dtype == "float32":
        return vectors.detach()
    return unpack(pack(vectors, dtype)).to(vectors.device)


def straight_through(vectors: torch.Tensor, dtype: str) -> torch.Tensor:
    """Forward: the rounded values; backward: the identity, so float32 vectors keep learning."""
    if dtype == "float32":
        return vectors
    return vectors + (rounded(vectors, dtype) - vectors).detach()


def nbytes(k: int, d: int, dtype: str) -> int:
    per = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[dtype]
    return k * d * per + (4 * k if dtype == "int8" else 0)
