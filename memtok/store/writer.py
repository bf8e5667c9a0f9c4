"""Writing a store: one part file per finished text, packed into shards, and the index built from
the shards. Safe to kill at any moment and to resume with any number of processes (see
`memtok.store.shards` for the layout).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import NotAMemoryError
from ..files import atomic_write, set_aside, sweep_temporaries
from ..format.memory import Memory
from ..format.sizes import payload_bytes
from ..model.dtypes import DTYPES
from ..model.precision import nbytes
from .shards import (
    load_from_shard,
    memory_id,
    part_files,
    read_shard_header,
    shard_files,
    write_shard,
)


def done_rows(root: Path) -> set[int]:
    """Rows finished by any process of any earlier run: in a shard, or in a part not yet packed."""
    ids = {mid for s in shard_files(root) for mid in read_shard_header(s)}
    ids |= {p.stem for p in part_files(root)}
    return {int(i) for i in ids}


def prepare(root: Path, world: int) -> None:
    """Before a (re)run's processes start: sweep temporaries a kill left, set aside a shard or part
    that cannot be read (its rows are encoded again), and pack the parts of ranks that do not run now."""
    sweep_temporaries(root)
    for path in shard_files(root) + part_files(root):
        try:
            read_shard_header(path)
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
        packed = {mid for s in shard_files(self.root, self.rank) for mid in read_shard_header(s)}
        for part in self.parts.glob("*.safetensors"):
            if part.stem in packed:
                part.unlink()

    def add(self, row: int, memory: Memory | None = None, failure: dict | None = None) -> None:
        """Record one finished text now: a memory, or a failure record for a text that could not be encoded."""
        mid = memory_id(row)
        if memory is not None:
            write_shard(self.parts / f"{mid}.safetensors", {mid: memory}, {})
        else:
            write_shard(self.parts / f"{mid}.safetensors", {}, {mid: failure})
        if len(list(self.parts.glob("*.safetensors"))) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        parts = sorted(self.parts.glob("*.safetensors"))
        if not parts:
            return
        memories, failures = {}, {}
        for part in parts:
            header = read_shard_header(part)
            for mid, h in header.items():
                if "failed" in h:
                    failures[mid] = h
                else:
                    memories[mid] = load_from_shard(part, mid, h)
        # the next number after every shard of this rank, set-aside ones included: no name is reused
        taken = [int(m.group(1)) for p in (self.root / "shards").glob(f"r{self.rank}-*")
                 if (m := re.match(r"r[0-9]+-([0-9]{5})", p.name))]
        n = max(taken, default=-1) + 1
        write_shard(self.root / "shards" / f"r{self.rank}-{n:05d}.safetensors", memories, failures)
        for part in parts:
            part.unlink()


def _sizes(header: dict, failed: bool) -> dict:
    """A memory's payload, its text's zstd size and the model's bound, from its shard header."""
    k, hidden, dtype = header.get("k"), header.get("hidden_size"), header.get("storage_dtype", "float32")
    if failed or type(k) is not int or type(hidden) is not int or dtype not in DTYPES:
        return {"payload_bytes": None, "zstd_bytes": None, "entropy_bits": None}
    vector_bytes = nbytes(k, hidden, dtype)
    return {"payload_bytes": payload_bytes(vector_bytes, len(header.get("segments") or [])),
            "zstd_bytes": (header.get("text_sizes") or {}).get("zstd"), "entropy_bits": header.get("entropy_bits")}


def write_index(root: Path) -> int:
    """Build index.parquet from every shard header (the shards are the truth); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for shard in shard_files(root):
        for mid, h in read_shard_header(shard).items():
            failed = "failed" in h
            rows.append({"id": mid, "row": int(mid), "shard": shard.name,
                         "status": "failed" if failed else ("exact" if h["exact"] else "not_exact"),
                         "exact": False if failed else h["exact"], "k": h.get("k"), "tokens": h.get("n_tokens"),
                         "steps": h.get("steps"), "seconds": h.get("seconds"), "text_sha256": h.get("text_sha256"),
                         "text": h.get("text"), "error": h.get("failed"), **_sizes(h, failed)})
    rows.sort(key=lambda r: r["row"])
    schema = pa.schema([("id", pa.string()), ("row", pa.int64()), ("shard", pa.string()), ("status", pa.string()),
                        ("exact", pa.bool_()), ("k", pa.int64()), ("tokens", pa.int64()), ("steps", pa.int64()),
                        ("seconds", pa.float64()), ("text_sha256", pa.string()), ("text", pa.string()),
                        ("error", pa.string()), ("payload_bytes", pa.int64()), ("zstd_bytes", pa.int64()),
                        ("entropy_bits", pa.float64())])
    table = pa.Table.from_pylist(rows, schema=schema)
    atomic_write(root / "index.parquet", lambda tmp: pq.write_table(table, tmp))
    return len(rows)
