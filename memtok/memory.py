"""The memory file: vectors in a `.safetensors` file, everything else in its JSON header.

safetensors holds tensors and string metadata only, so loading a memory can never run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .errors import MemtokError, ModelMismatchError, NotAMemoryError
from .layout import Layout
from .storage import DTYPES, nbytes, pack, unpack

FORMAT = "memtok"
FORMAT_VERSION = 2  # 2: segments


@dataclass
class Memory:
    """A text turned into memory vectors of one model, with what it takes to decode them."""

    vectors: torch.Tensor  # [K, d] float32, holding exactly the values the saved dtype gives back
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
    storage_dtype: str = "float32"
    # pieces of a text cut to fit (or asked for), in order: {"k", "tokens", "steps"[, "tried"]};
    # empty or one entry: the whole text decodes from all the vectors
    segments: list[dict] = field(default_factory=list)
    memtok_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def k(self) -> int:
        return self.vectors.shape[0]

    @property
    def layout(self) -> Layout:
        """Where its vectors sat when they were made: decoding must put them there again."""
        return Layout(tuple(self.prefix_ids), tuple(self.infix_ids), self.k)

    @property
    def nbytes(self) -> int:
        """Bytes of the saved vectors (int8 includes its per-vector scales)."""
        return nbytes(self.k, self.vectors.shape[1], self.storage_dtype)

    def segment_vectors(self) -> list[tuple[torch.Tensor, int]]:
        """(vectors, text tokens) of each piece; decoding each and joining the texts gives the whole."""
        if len(self.segments) <= 1:
            return [(self.vectors, self.n_tokens)]
        parts = self.vectors.split([s["k"] for s in self.segments])
        return [(v, s["tokens"]) for v, s in zip(parts, self.segments)]

    def metadata(self) -> dict:
        """Everything but the vectors, as plain JSON types."""
        d = asdict(self)
        del d["vectors"]
        d["k"], d["hidden_size"] = self.k, self.vectors.shape[1]
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a temporary file in the same folder, renamed over `path` when complete."""
        path = Path(path)
        meta = {"format": FORMAT, FORMAT: json.dumps(self.metadata(), sort_keys=True, ensure_ascii=False)}
        atomic_write(path, lambda tmp: save_file(pack(self.vectors, self.storage_dtype), tmp, meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Memory:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT or "memory" not in f.keys():  # noqa: SIM118 - safe_open is not a dict
                    raise NotAMemoryError(f"{path} is a safetensors file but not a memtok memory")
                vectors = unpack({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118
        except FileNotFoundError:
            raise MemtokError(f"no such file: {path}") from None
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise NotAMemoryError(f"{path} is not a memtok memory ({exc})") from None
        try:
            d = json.loads(meta[FORMAT])
        except json.JSONDecodeError:
            raise NotAMemoryError(f"{path} has a corrupt memtok header") from None
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise MemtokError(f"{path} was written by a newer memtok ({d.get('memtok_version')}); please upgrade")
        if vectors.ndim != 2 or vectors.shape[0] != d.get("k") or d.get("storage_dtype") not in DTYPES:
            raise NotAMemoryError(f"{path}: tensor 'memory' has shape {tuple(vectors.shape)}, expected [K, d]")
        segments = d.get("segments") or []
        if segments and (sum(s.get("k", 0) for s in segments) != d["k"]
                         or sum(s.get("tokens", 0) for s in segments) != d.get("n_tokens")):
            raise NotAMemoryError(f"{path}: its segments do not add up to its {d['k']} vectors and text tokens")
        known = {f for f in cls.__dataclass_fields__ if f != "vectors"}
        try:
            return cls(vectors=vectors, **{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise NotAMemoryError(f"{path} has an incomplete memtok header ({exc})") from None

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
