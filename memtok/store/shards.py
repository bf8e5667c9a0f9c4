"""A memory store: many memories in safetensors shards, with a Parquet index.

    STORE/store.json                 model fingerprint and the settings every shard shares
    STORE/shards/r{rank}-{n}.safetensors   many memories each: tensors `{id}` (+ `{id}.scale`), and a
                                     JSON header mapping each id to its metadata
    STORE/parts/r{rank}/{id}.safetensors   memories finished since the last shard (one file each)
    STORE/index.parquet              id, source row, shard, K, tokens, exact, status, steps, seconds,
                                     text sha256, text (if kept), error

Every file is written to a temporary name, fsynced and renamed, so none is ever half-written. A
finished memory is on disk at once (as a part); parts are packed into a shard every `shard_size`.
A rerun reads shards and parts to know what is done, so nothing finished is redone, lost or
duplicated, whatever number of processes ran before; parts left by a rank that does not run now
are packed first. Names read back (ids, shards) are accepted only in the store's own form, so a
crafted index cannot point outside the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import NotAMemoryError
from ..files import atomic_write
from ..format.memory import Memory, read_memory
from ..model.precision import pack

STORE_FORMAT = "memtok-store"
ID = re.compile(r"[0-9]{9}")
SHARD = re.compile(r"r([0-9]+)-([0-9]{5})\.safetensors")


def memory_id(row: int) -> str:
    return f"{row:09d}"


def write_shard(path: Path, memories: dict[str, Memory], extra: dict[str, dict]) -> None:
    """`memories` and failed rows (`extra`: id -> record without vectors) into one safetensors file."""
    tensors, header = {}, {}
    for mid, mem in memories.items():
        for name, t in pack(mem.vectors, mem.storage_dtype).items():
            tensors[mid if name == "memory" else f"{mid}.{name}"] = t
        header[mid] = mem.metadata()
    header.update(extra)
    meta = {"format": STORE_FORMAT, "memories": json.dumps(header, sort_keys=True, ensure_ascii=False)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, meta))


def read_shard_header(path: Path) -> dict[str, dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        header = json.loads(meta["memories"]) if meta.get("format") == STORE_FORMAT else None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not a shard"
        raise NotAMemoryError(f"{path} is not a memtok store shard ({exc})") from None
    if not isinstance(header, dict) or not all(ID.fullmatch(k) and isinstance(v, dict) for k, v in header.items()):
        raise NotAMemoryError(f"{path} is not a memtok store shard")
    return header


def load_from_shard(path: Path, mid: str, header: dict) -> Memory:
    with safe_open(str(path), framework="pt") as f:
        names = {role: name for role, name in (("memory", mid), ("scale", f"{mid}.scale")) if name in f.keys()}  # noqa: SIM118
        return read_memory(f, header, names, f"memory {mid} of {path}")


def part_files(root: Path) -> list[Path]:
    return sorted((root / "parts").glob("r*/*.safetensors"))


def shard_files(root: Path, rank: int | None = None) -> list[Path]:
    pattern = "*.safetensors" if rank is None else f"r{rank}-*.safetensors"
    return sorted(p for p in (root / "shards").glob(pattern) if SHARD.fullmatch(p.name))
