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
import os
import re
from collections.abc import Iterator
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from .errors import MemtokError, NotAMemoryError
from .files import atomic_write, set_aside, sweep_temporaries
from .memory import Memory, read_memory
from .storage import pack

STORE_FORMAT = "memtok-store"
ID = re.compile(r"[0-9]{9}")
SHARD = re.compile(r"r([0-9]+)-([0-9]{5})\.safetensors")


def memory_id(row: int) -> str:
    return f"{row:09d}"


def _write_shard(path: Path, memories: dict[str, Memory], extra: dict[str, dict]) -> None:
    """`memories` and failed rows (`extra`: id -> record without vectors) into one safetensors file."""
    tensors, header = {}, {}
    for mid, mem in memories.items():
        for name, t in pack(mem.vectors, mem.storage_dtype).items():
            tensors[mid if name == "memory" else f"{mid}.{name}"] = t
        header[mid] = mem.metadata()
    header.update(extra)
    meta = {"format": STORE_FORMAT, "memories": json.dumps(header, sort_keys=True, ensure_ascii=False)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, meta))


def _read_shard_header(path: Path) -> dict[str, dict]:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        header = json.loads(meta["memories"]) if meta.get("format") == STORE_FORMAT else None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not a shard"
        raise NotAMemoryError(f"{path} is not a memtok store shard ({exc})") from None
    if not isinstance(header, dict) or not all(ID.fullmatch(k) and isinstance(v, dict) for k, v in header.items()):
        raise NotAMemoryError(f"{path} is not a memtok store shard")
    return header


def _load_from_shard(path: Path, mid: str, header: dict) -> Memory:
    with safe_open(str(path), framework="pt") as f:
        names = {role: name for role, name in (("memory", mid), ("scale", f"{mid}.scale")) if name in f.keys()}  # noqa: SIM118
        return read_memory(f, header, names, f"memory {mid} of {path}")


def _parts(root: Path) -> list[Path]:
    return sorted((root / "parts").glob("r*/*.safetensors"))


def _shards(root: Path, rank: int | None = None) -> list[Path]:
    pattern = "*.safetensors" if rank is None else f"r{rank}-*.safetensors"
    return sorted(p for p in (root / "shards").glob(pattern) if SHARD.fullmatch(p.name))


def done_rows(root: Path) -> set[int]:
    """Rows finished by any process of any earlier run: in a shard, or in a part not yet packed."""
    ids = {mid for s in _shards(root) for mid in _read_shard_header(s)}
    ids |= {p.stem for p in _parts(root)}
    return {int(i) for i in ids}


def prepare(root: Path, world: int) -> None:
    """Before a (re)run's processes start: sweep temporaries a kill left, set aside a shard or part
    that cannot be read (its rows are encoded again), and pack the parts of ranks that do not run now."""
    sweep_temporaries(root)
    for path in _shards(root) + _parts(root):
        try:
            _read_shard_header(path)
        except NotAMemoryError as exc:
            set_aside(path, str(exc))
    for folder in sorted((root / "parts").glob("r*")):
        rank = folder.name[1:]
        if rank.isdigit() and int(rank) >= world:
            ShardWriter(root, int(rank)).flush()
            folder.rmdir()


class ShardWriter:
    """One rank's writer: a part file per finished text, packed into shards of `shard_size`."""

    def __init__(self, root: Path, rank: int, shard_size: int = 256) -> None:
        self.root, self.rank, self.shard_size = root, rank, shard_size
        self.parts = root / "parts" / f"r{rank}"
        self.parts.mkdir(parents=True, exist_ok=True)
        (root / "shards").mkdir(exist_ok=True)
        self._tidy()

    def _tidy(self) -> None:
        """Drop parts already packed into a shard (a kill between packing and deleting leaves them)."""
        packed = {mid for s in _shards(self.root, self.rank) for mid in _read_shard_header(s)}
        for part in self.parts.glob("*.safetensors"):
            if part.stem in packed:
                part.unlink()

    def add(self, row: int, memory: Memory | None = None, failure: dict | None = None) -> None:
        """Record one finished text now: a memory, or a failure record for a text that could not be encoded."""
        mid = memory_id(row)
        if memory is not None:
            _write_shard(self.parts / f"{mid}.safetensors", {mid: memory}, {})
        else:
            _write_shard(self.parts / f"{mid}.safetensors", {}, {mid: failure})
        if len(list(self.parts.glob("*.safetensors"))) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        parts = sorted(self.parts.glob("*.safetensors"))
        if not parts:
            return
        memories, failures = {}, {}
        for part in parts:
            header = _read_shard_header(part)
            for mid, h in header.items():
                if "failed" in h:
                    failures[mid] = h
                else:
                    memories[mid] = _load_from_shard(part, mid, h)
        # the next number after every shard of this rank, set-aside ones included: no name is reused
        taken = [int(m.group(1)) for p in (self.root / "shards").glob(f"r{self.rank}-*")
                 if (m := re.match(r"r[0-9]+-([0-9]{5})", p.name))]
        n = max(taken, default=-1) + 1
        _write_shard(self.root / "shards" / f"r{self.rank}-{n:05d}.safetensors", memories, failures)
        for part in parts:
            part.unlink()


def write_index(root: Path) -> int:
    """Build index.parquet from every shard header (the shards are the truth); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for shard in _shards(root):
        for mid, h in _read_shard_header(shard).items():
            failed = "failed" in h
            rows.append({"id": mid, "row": int(mid), "shard": shard.name,
                         "status": "failed" if failed else ("exact" if h["exact"] else "not_exact"),
                         "exact": False if failed else h["exact"], "k": h.get("k"), "tokens": h.get("n_tokens"),
                         "steps": h.get("steps"), "seconds": h.get("seconds"), "text_sha256": h.get("text_sha256"),
                         "text": h.get("text"), "error": h.get("failed")})
    rows.sort(key=lambda r: r["row"])
    schema = pa.schema([("id", pa.string()), ("row", pa.int64()), ("shard", pa.string()), ("status", pa.string()),
                        ("exact", pa.bool_()), ("k", pa.int64()), ("tokens", pa.int64()), ("steps", pa.int64()),
                        ("seconds", pa.float64()), ("text_sha256", pa.string()), ("text", pa.string()),
                        ("error", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(root / "index.parquet", lambda tmp: pq.write_table(table, tmp))
    return len(rows)


class MemoryStore:
    """Read a store: `len(store)`, `for mem_id in store`, `store[mem_id]`, `store.decode(codec, mem_id)`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path)
        if not (self.root / "store.json").is_file() or not (self.root / "index.parquet").is_file():
            raise NotAMemoryError(f"{path} is not a finished memtok store (no store.json or index.parquet)")
        import pyarrow.parquet as pq

        try:
            self.info = json.loads((self.root / "store.json").read_text())
            self.index = pq.read_table(self.root / "index.parquet").to_pylist()
        except Exception as exc:  # noqa: BLE001 - any unreadable store is refused with one line
            raise NotAMemoryError(f"{path} is not a readable memtok store ({type(exc).__name__})") from None
        for r in self.index:  # ids and shard names become paths: only the store's own forms
            if not (isinstance(r.get("id"), str) and ID.fullmatch(r["id"]) and r.get("row") == int(r["id"])
                    and (r.get("status") == "failed" or (isinstance(r.get("shard"), str)
                                                         and SHARD.fullmatch(r["shard"])))):
                raise NotAMemoryError(f"{path}: its index holds a row that is not of the store's own form "
                                      f"(id {str(r.get('id'))[:40]!r}, shard {str(r.get('shard'))[:40]!r})")
        if not isinstance(self.info, dict) or not isinstance(self.info.get("model"), str):
            raise NotAMemoryError(f"{path}: its store.json names no model")
        self._by_id = {r["id"]: r for r in self.index}

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __contains__(self, mem_id: str) -> bool:
        return mem_id in self._by_id

    def record(self, mem_id: str) -> dict:
        try:
            return self._by_id[mem_id]
        except KeyError:
            raise MemtokError(f"no memory with id {mem_id!r} in {self.root}") from None

    def __getitem__(self, mem_id: str) -> Memory:
        rec = self.record(mem_id)
        if rec["status"] == "failed":
            raise MemtokError(f"text {mem_id} could not be encoded: {rec['error']}")
        shard = self.root / "shards" / rec["shard"]
        header = _read_shard_header(shard)
        if mem_id not in header:
            raise NotAMemoryError(f"{shard} does not hold memory {mem_id}, which the index places there")
        return _load_from_shard(shard, mem_id, header[mem_id])

    def decode(self, codec, mem_id: str) -> str:
        """The text of one memory; the codec's model fingerprint must match (as for single files)."""
        return codec.decode(self[mem_id])
