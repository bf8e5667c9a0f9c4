"""The memory file: vectors in a `.safetensors` file, everything else in its JSON header.

safetensors holds tensors and string metadata only, so loading a memory can never run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .errors import MemtokError, ModelMismatchError, NotAMemoryError

FORMAT = "memtok"
FORMAT_VERSION = 1
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Memory:
    """A text turned into memory vectors of one model, with what it takes to decode them."""

    vectors: torch.Tensor  # [K, d]
    model_name: str
    model_fingerprint: str
    template: str
    prefix_ids: list[int]
    infix_ids: list[int]
    n_tokens: int  # text tokens, EOS not counted
    text_sha256: str
    recipe: dict
    steps: int
    seconds: float
    final_loss: float
    min_margin: float
    token_accuracy: float
    exact: bool  # verified by greedy decoding from the vectors alone
    text: str | None = None
    memtok_version: str = __version__
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.vectors.shape[0]

    @property
    def dtype(self) -> str:
        return str(self.vectors.dtype).removeprefix("torch.")

    @property
    def nbytes(self) -> int:
        return self.vectors.numel() * self.vectors.element_size()

    def metadata(self) -> dict:
        """Everything but the vectors, as plain JSON types."""
        d = asdict(self)
        del d["vectors"]
        d["k"], d["dtype"], d["hidden_size"] = self.k, self.dtype, self.vectors.shape[1]
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a temporary file in the same folder, renamed over `path` when complete."""
        path = Path(path)
        meta = {"format": FORMAT, FORMAT: json.dumps(self.metadata(), sort_keys=True, ensure_ascii=False)}
        atomic_write(path, lambda tmp: save_file({"memory": self.vectors.detach().contiguous().cpu()}, tmp, meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Memory:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT or "memory" not in f.keys():
                    raise NotAMemoryError(f"{path} is a safetensors file but not a memtok memory")
                vectors = f.get_tensor("memory")
        except FileNotFoundError:
            raise MemtokError(f"no such file: {path}") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise NotAMemoryError(f"{path} is not a memtok memory ({exc})") from None
        try:
            d = json.loads(meta[FORMAT])
        except json.JSONDecodeError:
            raise NotAMemoryError(f"{path} has a corrupt memtok header") from None
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise MemtokError(f"{path} was written by a newer memtok ({d.get('memtok_version')}); please upgrade")
        if vectors.ndim != 2 or vectors.shape[0] != d.get("k"):
            raise NotAMemoryError(f"{path}: tensor 'memory' has shape {tuple(vectors.shape)}, expected [K, d]")
        known = {f for f in cls.__dataclass_fields__ if f != "vectors"}
        try:
            return cls(vectors=vectors, **{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise NotAMemoryError(f"{path} has an incomplete memtok header ({exc})") from None

    def to_dtype(self, dtype: str) -> Memory:
        if dtype not in DTYPES:
            raise MemtokError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        return replace(self, vectors=self.vectors.to(DTYPES[dtype]))

    def check_model(self, fingerprint: str, model_name: str) -> None:
        if fingerprint != self.model_fingerprint:
            raise ModelMismatchError(
                f"this memory was made with model {self.model_name} (fingerprint {self.model_fingerprint[:12]}), "
                f"not {model_name} ({fingerprint[:12]}); decode it with --model {self.model_name}")


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)` and move the result onto `path`; on any failure nothing is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
