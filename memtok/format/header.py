"""The one place a memory read from disk is checked: its JSON header and its tensors.

A memory file (or a store shard) may come from anywhere, so nothing in it is trusted: every field
is checked for type and range, the tensors' dtypes and shapes against the header before any data
is read, and the values for finiteness after. Whatever fails is refused with one line
(`NotAMemoryError`), never handed on to fail later inside torch or to print raw.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping

import torch

from ..errors import MemtokError, NotAMemoryError
from ..limits import MAX_K, template_ok
from ..model.dtypes import STORAGE

FORMAT_VERSION = 3  # 2: segments; 3: framed low-bit dtypes and text sizes
MAX_HIDDEN = 65536
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SOURCE = re.compile(r"hub:[\w./-]+(@[\w.-]+)?|sha256:[0-9a-f]{64}|package:[\w.-]+")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _int(lo: int, hi: int | None = None) -> Callable[[object], bool]:
    return lambda v: type(v) is int and v >= lo and (hi is None or v <= hi)


def _number(lo: float = -math.inf, hi: float = math.inf) -> Callable[[object], bool]:
    return lambda v: type(v) in (int, float) and not math.isnan(v) and lo <= v <= hi


def _str(v: object) -> bool:
    return isinstance(v, str)


def _printable(v: object) -> bool:
    """A name shown on a terminal: no escape codes or other control characters."""
    return isinstance(v, str) and 0 < len(v) <= 1000 and v.isprintable()


def _hex64(v: object) -> bool:
    return isinstance(v, str) and _HEX64.fullmatch(v) is not None


def _ids(v: object) -> bool:
    return isinstance(v, list) and len(v) <= 100_000 and all(type(i) is int and i >= 0 for i in v)


def _recipe(v: object) -> bool:
    return isinstance(v, dict) and isinstance(v.get("name"), str)


# field -> (check, what it must be); `text`, `segments`, `k` and `hidden_size` are checked below
FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "format_version": (_int(1, FORMAT_VERSION), f"a format version from 1 to {FORMAT_VERSION}"),
    "memtok_version": (_printable, "a version string"),
    "model_name": (_printable, "a printable model name"),
    "model_fingerprint": (_hex64, "64 lowercase hex digits"),
    "template": (template_ok, "a string with {memory} exactly once"),
    "prefix_ids": (_ids, "a list of token ids"),
    "infix_ids": (_ids, "a list of token ids"),
    "n_tokens": (_int(1), "a positive count of text tokens"),
    "text_sha256": (_hex64, "64 lowercase hex digits"),
    "recipe": (_recipe, "an object with a name"),
    "steps": (_int(0), "a step count"),
    "seconds": (_number(0), "a non-negative number"),
    "final_loss": (_number(), "a number"),
    "min_margin": (_number(), "a number"),
    # a length-weighted mean over segments: rounding may carry it a hair past 1
    "token_accuracy": (_number(0, 1 + 1e-9), "a number from 0 to 1"),
    "exact": (lambda v: type(v) is bool, "true or false"),
    "storage_dtype": (lambda v: isinstance(v, str) and v in STORAGE, f"one of {', '.join(STORAGE)}"),
}
OPTIONAL = {"memtok_version": "unknown", "storage_dtype": "float32", "format_version": 1}
# a semantic memory's space (`memtok.start.semantic.SemanticSpace.describe`)
SEMANTIC: dict[str, Callable[[object], bool]] = {"teacher": _printable, "rank": _int(1, MAX_HIDDEN), "seed": _int(0),
                                                 "scale": _number(0, 1e9)}
# the teacher's own: the model's layer (its own states), or a second model's weights' sha256
TEACHER_FIELDS: dict[str, Callable[[object], bool]] = {
    "layer": _int(0, 100_000), "fingerprint": lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None}


def check_space(semantic: object, where: str) -> dict:
    """A semantic space's description (`SemanticSpace.describe`), checked field by field."""
    checks = {**SEMANTIC, **TEACHER_FIELDS}
    if not (isinstance(semantic, dict) and set(SEMANTIC) <= set(semantic) and len(set(semantic) - set(SEMANTIC)) == 1
            and set(semantic) <= set(checks) and all(checks[k](v) for k, v in semantic.items())):
        raise NotAMemoryError(f"{where}: 'semantic' must describe a space: {', '.join(SEMANTIC)}, and its teacher's "
                              f"{' or '.join(TEACHER_FIELDS)}")
    return semantic


SIZE_NAMES = ("utf8", "gzip", "xz", "zstd")


def check_header(header: object, shapes: Mapping[str, tuple[str, list[int]]], where: str) -> dict:
    """The Memory fields of a header, checked field by field and against the tensors' dtypes and
    shapes (`shapes`: saved name -> (safetensors dtype, shape); data not yet read)."""
    if not isinstance(header, dict):
        raise NotAMemoryError(f"{where}: its memtok header is not a JSON object")
    version = header.get("format_version", 1)
    if type(version) is int and version > FORMAT_VERSION:
        raise MemtokError(f"{where} was written by a newer memtok ({str(header.get('memtok_version'))[:40]}); "
                          f"please upgrade")
    fields = {**OPTIONAL, **{k: v for k, v in header.items() if k in FIELDS}}
    for name, (ok, what) in FIELDS.items():
        if name not in fields:
            raise NotAMemoryError(f"{where}: its header has no {name!r}")
        if not ok(fields[name]):
            raise NotAMemoryError(f"{where}: {name!r} in its header must be {what}")
    text = header.get("text")
    if text is not None and (not isinstance(text, str) or sha256_text(text) != fields["text_sha256"]):
        raise NotAMemoryError(f"{where}: the text in its header does not match its text_sha256")
    fields["text"] = text
    fields["segments"] = _segments(header, fields["n_tokens"], where)
    fields.update(_sizes(header, where))
    fields.update(_record(header, where))
    _check_tensors(header, fields, shapes, where)
    return fields


def _sizes(header: dict, where: str) -> dict:
    """The optional size fields (format 3): compressed sizes of the text and its bound in bits."""
    sizes, bits = header.get("text_sizes"), header.get("entropy_bits")
    if sizes is not None and not (isinstance(sizes, dict) and set(sizes) == set(SIZE_NAMES)
                                  and all(_int(0)(v) for v in sizes.values())):
        raise NotAMemoryError(f"{where}: 'text_sizes' must map {', '.join(SIZE_NAMES)} to byte counts")
    if bits is not None and not _number(0, 1e15)(bits):
        raise NotAMemoryError(f"{where}: 'entropy_bits' must be a non-negative number")
    return {"text_sizes": sizes, "entropy_bits": bits}


def _record(header: dict, where: str) -> dict:
    """The optional fields of how a memory was made: its raw optimisation time, its start, where its
    model came from, and a semantic memory's space."""
    elapsed, start, source = header.get("elapsed_seconds"), header.get("start"), header.get("model_source")
    if elapsed is not None and not _number(0)(elapsed):
        raise NotAMemoryError(f"{where}: 'elapsed_seconds' must be a non-negative number")
    if start is not None and not _printable(start):
        raise NotAMemoryError(f"{where}: 'start' must be a printable name")
    if source is not None and not (_printable(source) and _SOURCE.fullmatch(source)):
        raise NotAMemoryError(f"{where}: 'model_source' must be hub:<id>[@<commit>], sha256:<hex> or package:<name>")
    semantic = header.get("semantic")
    if semantic is not None:
        check_space(semantic, where)
    return {"elapsed_seconds": elapsed, "start": start, "model_source": source, "semantic": semantic}


def _segments(header: dict, n_tokens: int, where: str) -> list[dict]:
    segments = header.get("segments") or []
    k = header.get("k")
    if type(k) is not int or k < 1:
        raise NotAMemoryError(f"{where}: 'k' in its header must be a positive number of vectors")
    if not isinstance(segments, list) or not all(
            isinstance(s, dict) and _int(1, MAX_K)(s.get("k")) and _int(1)(s.get("tokens"))
            and _int(0)(s.get("steps", 0)) and _ids(s.get("tried", [])) for s in segments):
        raise NotAMemoryError(f"{where}: 'segments' must be a list of {{k: 1-{MAX_K}, tokens: >= 1, steps}}")
    if not segments and k > MAX_K:
        raise NotAMemoryError(f"{where}: {k} vectors in one segment; at most {MAX_K}")
    if segments and (sum(s["k"] for s in segments) != k or sum(s["tokens"] for s in segments) != n_tokens):
        raise NotAMemoryError(f"{where}: its segments do not add up to its {k} vectors and {n_tokens} text tokens")
    return segments


def _check_tensors(header: dict, fields: dict, shapes: Mapping[str, tuple[str, list[int]]], where: str) -> None:
    dtype, k = fields["storage_dtype"], header["k"]
    spec = STORAGE[dtype]
    expected = {"memory", "scale"} if spec.scale else {"memory"}
    if set(shapes) != expected:
        raise NotAMemoryError(f"{where}: holds tensors {sorted(shapes)}, a {dtype} memory holds {sorted(expected)}")
    saved, shape = shapes["memory"]
    if saved != spec.saved_as:
        raise NotAMemoryError(f"{where}: its vectors are saved as {saved}, its header says {dtype}")
    hidden = header.get("hidden_size", shape[-1] if shape else None)
    if not _int(1, MAX_HIDDEN)(hidden):
        raise NotAMemoryError(f"{where}: 'hidden_size' in its header must be from 1 to {MAX_HIDDEN}")
    width = spec.width(hidden)
    if len(shape) != 2 or shape[0] != k or shape[1] != width:
        raise NotAMemoryError(f"{where}: tensor 'memory' has shape {list(shape)}, its header says [{k}, {width}]")
    if spec.scale and shapes["scale"] != (spec.scale, [k]):
        raise NotAMemoryError(f"{where}: a {dtype} memory needs one {spec.scale} scale per vector")


def check_levels(packed: torch.Tensor, dtype: str, where: str) -> None:
    """Packed levels that are levels: a byte beyond the last combination of digits is no memory's."""
    spec = STORAGE[dtype]
    if spec.framed and packed.numel() and int(packed.max()) >= spec.combinations:
        raise NotAMemoryError(f"{where}: its packed {dtype} levels hold bytes no {dtype} memory writes")


def check_values(vectors: torch.Tensor, scale: torch.Tensor | None, where: str) -> None:
    """Vectors that are numbers: NaN or infinity would decode to noise, or crash inside the model."""
    if not bool(torch.isfinite(vectors).all()):
        raise NotAMemoryError(f"{where}: its vectors hold NaN or infinite values")
    if scale is not None and not bool(((scale > 0) & torch.isfinite(scale)).all()):
        raise NotAMemoryError(f"{where}: its scales must be positive finite numbers")
