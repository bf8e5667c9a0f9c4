"""The memory file: vectors in a `.safetensors` file, everything else in its JSON header.

safetensors holds tensors and string metadata only, so loading a memory can never run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import MemtokError, ModelMismatchError, NotAMemoryError
from ..files import atomic_write
from ..model.layout import Layout
from ..model.precision import nbytes, pack, unpack
from ..version import __version__
from .header import FORMAT_VERSION, check_header, check_levels, check_values
from .sizes import payload_bytes, size_figures

FORMAT = "memtok"


@dataclass(eq=False, repr=False)
class Memory:
    """A text turned into memory vectors of one model, with what it takes to decode them."""

    # [K, d] float32, exactly the values the saved dtype gives back: the input vectors, or for a framed
    # dtype (`memtok.model.precision`) levels times scales in the model's frame
    vectors: torch.Tensor
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
    # the text's sizes under general-purpose compressors, and its cross-entropy in bits under the
    # model with no memory (the bound: `memtok.format.sizes`), recorded when encoded
    text_sizes: dict[str, int] | None = None
    entropy_bits: float | None = None
    # `seconds` is the text's share of the run's wall time (a batch's passes split among its texts);
    # this is the time from its first pass to its last, shared or not
    elapsed_seconds: float | None = None
    start: str | None = None  # what its optimisation started from: a learned start's name, or the recipe's init
    model_source: str | None = None  # where its model came from, pinned (`memtok.model.identity`), to find it again
    semantic: dict | None = None  # for a semantic memory, the space its code is in (`memtok.start.semantic`)
    memtok_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __eq__(self, other: object) -> bool:
        """The same vectors (bit for bit) and the same header: what two files of one memory share."""
        if not isinstance(other, Memory):
            return NotImplemented
        mine, theirs = asdict(self), asdict(other)
        return torch.equal(mine.pop("vectors"), theirs.pop("vectors")) and mine == theirs

    __hash__ = None  # a mutable record, as a dataclass with eq is

    def __repr__(self) -> str:
        text = "" if self.text is None else f", text={self.text[:40] + ('...' if len(self.text) > 40 else '')!r}"
        return (f"Memory(model={self.model_name!r}, k={self.k}, n_tokens={self.n_tokens}, exact={self.exact}, "
                f"steps={self.steps}, storage={self.storage_dtype!r}{text})")

    @property
    def k(self) -> int:
        return self.vectors.shape[0]

    @property
    def layout(self) -> Layout:
        """Where its vectors sat when they were made: decoding must put them there again."""
        return Layout(tuple(self.prefix_ids), tuple(self.infix_ids), self.k)

    @property
    def nbytes(self) -> int:
        """Bytes of the saved vectors, their per-vector scales included."""
        return nbytes(self.k, self.vectors.shape[1], self.storage_dtype)

    @property
    def payload_bytes(self) -> int:
        """What this memory costs in a store: its saved numbers and scales, and per-text fields."""
        return payload_bytes(self.nbytes, len(self.segments))

    def sizes(self) -> dict:
        """Payload beside the text's compressed sizes and the model's bound (`memtok.format.sizes.size_figures`)."""
        return size_figures(self.payload_bytes, self.text_sizes, self.entropy_bits)

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
        """Read and check a memory file: anything malformed is refused with one line, never half-loaded."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT or "memory" not in f.keys():  # noqa: SIM118 - safe_open is not a dict
                    raise NotAMemoryError(f"{path} is a safetensors file but not a memtok memory")
                try:
                    header = json.loads(meta[FORMAT])
                except (KeyError, json.JSONDecodeError):
                    raise NotAMemoryError(f"{path} has a corrupt memtok header") from None
                return read_memory(f, header, {name: name for name in f.keys()}, str(path))  # noqa: SIM118
        except FileNotFoundError:
            raise MemtokError(f"no such file: {path}") from None
        except (SafetensorError, OSError, ValueError, KeyError) as exc:
            raise NotAMemoryError(f"{path} is not a memtok memory ({exc})") from None

    def check_model(self, fingerprint: str, model_name: str) -> None:
        if fingerprint != self.model_fingerprint:
            raise ModelMismatchError(
                f"this memory was made with model {self.model_name} (fingerprint {self.model_fingerprint[:12]}), "
                f"not {model_name} ({fingerprint[:12]}); decode it with model={self.model_name!r}")


def read_memory(f, header: object, names: dict[str, str], where: str) -> Memory:
    """A Memory from an open safetensors file `f`: `names` maps each saved role (`memory`, `scale`)
    to its tensor in `f`. Shapes and dtypes are checked against the header before any data is read."""
    shapes = {role: (f.get_slice(t).get_dtype(), f.get_slice(t).get_shape()) for role, t in names.items()}
    fields = check_header(header, shapes, where)
    tensors = {role: f.get_tensor(t) for role, t in names.items()}
    check_levels(tensors["memory"], fields["storage_dtype"], where)
    vectors = unpack(tensors, fields["storage_dtype"], header.get("hidden_size"))
    check_values(vectors, tensors.get("scale"), where)
    return Memory(vectors=vectors, **fields)
