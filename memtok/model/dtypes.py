"""The names of dtypes, without torch: the model's arithmetic, quantised weights, and the storage
dtypes of memory vectors with what each costs (`memtok.model.precision` does the arithmetic). What
the command line offers and a config checks, readable before torch is imported."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import MemtokError

MODEL_DTYPES = ("float32", "bfloat16", "float16")  # what a model computes in (`memtok.model.placement`)
QUANTISED = ("int8", "nf4")  # weights quantised by bitsandbytes


@dataclass(frozen=True)
class StorageDtype:
    """One storage dtype, all in one place: how it is saved, what it costs, how it is planned.

    A new dtype is one entry in `STORAGE`; the header check, the byte counts and the compact plan
    read it from here.
    """

    name: str
    saved_as: str  # safetensors' dtype of the `memory` tensor
    value_bytes: int  # bytes of one saved number (framed: of one byte of packed levels)
    scale: str | None = None  # safetensors' dtype of the per-vector `scale`, if the dtype has one
    # framed (levels in the model's frame): distinct levels (an even base has no zero level), and the
    # step between levels in units of the vector's rms (the mean-squared-error step of a uniform
    # quantiser for a Gaussian, Max 1960; None: the mean absolute value, as XNOR-Net's)
    base: int = 0
    step: float | None = None
    # framed: text tokens per vector the compact plan starts from (memtok.encode.plan)
    compact_tokens: int | None = None

    @property
    def framed(self) -> bool:
        return self.base > 0

    @property
    def levels(self) -> int:
        """Levels either side of zero."""
        return self.base // 2

    @property
    def digits_per_byte(self) -> int:
        """How many levels one byte holds (15 levels: 2, 3: 5, 2: 8)."""
        return math.floor(8 / math.log2(self.base) + 1e-9)

    @property
    def combinations(self) -> int:
        """Distinct bytes a framed dtype writes: its base to the power of the digits a byte holds."""
        return self.base ** self.digits_per_byte

    def width(self, hidden: int) -> int:
        """Saved numbers (framed: bytes of levels) of one vector of `hidden` dimensions."""
        return -(-hidden // self.digits_per_byte) if self.framed else hidden

    def nbytes(self, k: int, d: int) -> int:
        """Bytes of `k` saved vectors of `d` numbers, scales included."""
        scale = {None: 0, "F16": 2, "F32": 4}[self.scale]
        return k * (self.width(d) * self.value_bytes + scale)


# int4's 15 levels fill 4 bits. The compact plans' tokens per vector: int4 levels held 64-token
# segments of raschka_chunks_1000's first row in 96-135 steps, ternary levels 32-token ones in
# 75-467 but 64-token ones only 1 in 4 within 600 steps, and binary levels 32-token ones only 2 in
# 7 (an exploratory run, in docs/results/README.md, compact memories). int4 made every text exact
# on the first 20 rows of raschka_chunks_1000 and the first 10 of chunks.csv.
STORAGE = {s.name: s for s in (
    StorageDtype("float32", "F32", 4), StorageDtype("float16", "F16", 2), StorageDtype("bfloat16", "BF16", 2),
    StorageDtype("int8", "I8", 1, scale="F32"),
    StorageDtype("int4", "U8", 1, scale="F16", base=15, step=0.3352, compact_tokens=64),
    StorageDtype("ternary", "U8", 1, scale="F16", base=3, step=1.224, compact_tokens=32),
    StorageDtype("binary", "U8", 1, scale="F16", base=2, step=None, compact_tokens=32),
)}
DTYPES = tuple(STORAGE)
FRAMED = tuple(name for name, s in STORAGE.items() if s.framed)


def check_dtype(dtype: str) -> str:
    if dtype not in STORAGE:
        raise MemtokError(f"unknown storage dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return dtype


def framed(dtype: str) -> bool:
    return STORAGE[check_dtype(dtype)].framed


