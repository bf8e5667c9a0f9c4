"""A store's semantic keys in one file, so a vector search reads one tensor instead of every memory.

    STORE/keys.safetensors   rows [S] int64 (the memory each segment is of), keys [S, r] float32
                             (each segment's component in the semantic subspace, normalised), and
                             in its metadata the space and the model's fingerprint

Built from the shards when the index is (the shards are the truth), for a store of semantic
memories only; a search checks the space and the model against its own before it reads a key.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..codec import MemoryCodec
from ..errors import MemtokError, NotAMemoryError
from ..files import atomic_write
from ..format.header import check_space
from ..start.semantic import SemanticSpace
from .search import memories_space, segment_keys
from .shards import load_from_shard, read_shard_header, shard_files

KEYS = "keys.safetensors"
FORMAT = "memtok-keys"


def write_keys(root: Path, codec: MemoryCodec) -> int:
    """Every semantic memory's segment keys into `KEYS`, shard by shard; returns how many. A store
    whose memories are not semantic gets no file (and loses a stale one)."""
    rows, keys, spaces = [], [], []
    for shard in shard_files(root):
        header = {mid: h for mid, h in read_shard_header(shard).items() if "failed" not in h}
        if not header:
            continue
        if any(h.get("semantic") is None for h in header.values()):
            (root / KEYS).unlink(missing_ok=True)
            return 0
        memories = [load_from_shard(shard, mid, h) for mid, h in header.items()]
        space = memories_space(codec, [m.semantic for m in memories] + spaces[-1:])
        spaces.append(space.describe())
        owners, segment = segment_keys(codec, memories, space)
        rows.append(torch.tensor([int(mid) for mid in header])[owners])
        keys.append(segment)
    if not keys:
        (root / KEYS).unlink(missing_ok=True)
        return 0
    meta = {"format": FORMAT, "space": json.dumps(space.describe(), sort_keys=True),
            "model_fingerprint": codec.lm.fingerprint}
    tensors = {"rows": torch.cat(rows), "keys": torch.cat(keys).contiguous()}
    atomic_write(root / KEYS, lambda tmp: save_file(tensors, tmp, meta))
    return len(tensors["rows"])


def read_keys(root: Path, codec: MemoryCodec, teacher: str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, SemanticSpace] | None:
    """(rows [S], keys [S, r], their space) of a store of semantic memories made with this codec's
    model; None for a store without keys. Keys of another model, of another teacher than `teacher`,
    or of a space that is not this machine's are refused (`memories_space`)."""
    path = root / KEYS
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            rows, keys = f.get_tensor("rows"), f.get_tensor("keys")
        space = json.loads(meta["space"])
    except Exception as exc:  # noqa: BLE001 - any unreadable file is refused with one line
        raise NotAMemoryError(f"{path} is not a memtok keys file ({type(exc).__name__})") from None
    if meta.get("format") != FORMAT or rows.dtype != torch.int64 or keys.dtype != torch.float32 \
            or rows.ndim != 1 or keys.ndim != 2 or len(rows) != len(keys) or (len(rows) and rows.min() < 0) \
            or not isinstance(space, dict) or keys.shape[1] != space.get("rank"):
        raise NotAMemoryError(f"{path} is not a memtok keys file")
    if meta.get("model_fingerprint") != codec.lm.fingerprint:
        raise MemtokError(f"{path} was made with another model than {codec.lm.name}: search with the store's own model")
    return rows, keys, memories_space(codec, [check_space(space, str(path))], teacher)
