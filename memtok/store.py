"""A memory store: many memories in safetensors shards, with a Parquet index.

    STORE/store.json                 model fingerprint and the settings every shard shares
    STORE/shards/r{rank}-{n}.safetensors   many memories each: tensors `{id}` (+ `{id}.scale`), and a
                                     JSON header mapping each id to its metadata
    STORE/parts/r{rank}/{id}.safetensors   memories finished since the last shard (one file each)
    STORE/index.parquet              id, source row, shard, K, tokens, exact, status, steps, seconds,
                                     text sha256, text (if kept), error

Every file is written to a temporary name and renamed, so none is ever half-written. A finished
memory is on disk at once (as a part); parts are packed into a shard every `shard_size`. A rerun
reads shards and parts to know what is done, so nothing finished is redone, lost or duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from .errors import MemtokError, NotAMemoryError
from .memory import Memory, atomic_write
from .storage import pack, unpack

STORE_FORMAT = "memtok-store"
INDEX_COLUMNS = ["id", "row", "shard", "status", "exact", "k", "tokens", "steps", "seconds", "text_sha256", "text",
                 "error"]


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
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not a shard"
        raise NotAMemoryError(f"{path} is not a memtok store shard ({exc})") from None
    if meta.get("format") != STORE_FORMAT:
        raise NotAMemoryError(f"{path} is not a memtok store shard")
    return json.loads(meta["memories"])


def _load_from_shard(path: Path, mid: str, header: dict) -> Memory:
    with safe_open(str(path), framework="pt") as f:
        names = [n for n in f.keys() if n == mid or n.startswith(mid + ".")]  # noqa: SIM118 - safe_open is not a dict
        tensors = {("memory" if n == mid else n.split(".", 1)[1]): f.get_tensor(n) for n in names}
    known = {f for f in Memory.__dataclass_fields__ if f != "vectors"}
    return Memory(vectors=unpack(tensors), **{k: v for k, v in header.items() if k in known})


class ShardWriter:
    """One rank's writer: a part file per finished text, packed into shards of `shard_size`."""

    def __init__(self, root: Path, rank: int, shard_size: int = 256) -> None:
        self.root, self.rank, self.shard_size = root, rank, shard_size
        self.parts = root / "parts" / f"r{rank}"
        self.parts.mkdir(parents=True, exist_ok=True)
        (root / "shards").mkdir(exist_ok=True)
        self._tidy()

    def _shards(self) -> list[Path]:
        return self.shards_of(self.root, self.rank)

    @staticmethod
    def shards_of(root: Path, rank: int) -> list[Path]:
        return sorted((root / "shards").glob(f"r{rank}-*.safetensors"))

    @classmethod
    def rows_of(cls, root: Path, rank: int) -> set[int]:
        """Rows rank `rank` has finished: in its shards or in its parts not yet packed."""
        ids = {mid for s in cls.shards_of(root, rank) for mid in _read_shard_header(s)}
        ids |= {p.stem for p in (root / "parts" / f"r{rank}").glob("*.safetensors")}
        return {int(i) for i in ids}

    def _tidy(self) -> None:
        """Drop parts already packed into a shard (a kill between packing and deleting leaves them)."""
        packed = {mid for s in self._shards() for mid in _read_shard_header(s)}
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
        n = len(self._shards())
        _write_shard(self.root / "shards" / f"r{self.rank}-{n:05d}.safetensors", memories, failures)
        for part in parts:
            part.unlink()


def write_index(root: Path) -> int:
    """Build index.parquet from every shard header (the shards are the truth); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for shard in sorted((root / "shards").glob("*.safetensors")):
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
        self.info = json.loads((self.root / "store.json").read_text())
        import pyarrow.parquet as pq

        self.index = pq.read_table(self.root / "index.parquet").to_pylist()
        self._by_id = {r["id"]: r for r in self.index}

    @classmethod
    def open(cls, path: str | os.PathLike) -> MemoryStore:
        return cls(path)

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
        return _load_from_shard(shard, mem_id, _read_shard_header(shard)[mem_id])

    def decode(self, codec, mem_id: str) -> str:
        """The text of one memory; the codec's model fingerprint must match (as for single files)."""
        return codec.decode(self[mem_id])
