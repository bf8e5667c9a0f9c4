"""Do float32 memories survive plain float16 rounding? Save every exact memory of a store or of an
eval run again in float16 (no repair, no re-optimisation), load it back and decode it greedily:
the share still exact says how often `--dtype float16` gets its halved bytes for free, and how
often it needs the repair it does.

    python bench/fp16_rounding.py STORE_OR_EVAL_DIR [--dtype float16]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from pathlib import Path

from memtok import Memory, MemoryCodec
from memtok.format.header import sha256_text
from memtok.store import MemoryStore


def exact_memories(path: Path) -> Iterator[tuple[str, Memory]]:
    """(name, memory) for each exact memory of a store, or of an eval run's `memories/` folder."""
    if (path / "store.json").is_file():
        store = MemoryStore(path)
        yield from ((mid, store[mid]) for mid in store if store.record(mid)["status"] == "exact")
        return
    folder = path / "memories" if (path / "memories").is_dir() else path
    for file in sorted(folder.glob("*.safetensors")):
        mem = Memory.load(file)
        if mem.exact:
            yield file.name, mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--dtype", default="float16")
    args = ap.parse_args()
    codec = None
    checked, broken, before, after = 0, [], 0, 0
    for name, mem in exact_memories(args.path):
        codec = codec or MemoryCodec.from_pretrained(mem.model_name)
        before += mem.nbytes
        mem.storage_dtype = args.dtype
        with tempfile.TemporaryDirectory() as tmp:
            again = Memory.load(mem.save(Path(tmp) / "m.safetensors"))
        after += again.nbytes
        checked += 1
        if sha256_text(codec.decode(again, check=False)) != mem.text_sha256:
            broken.append(name)
    print(f"{checked - len(broken)}/{checked} exact float32 memories still decode exactly after {args.dtype} rounding "
          f"({before} -> {after} bytes)" + (f"; broken: {', '.join(broken)}" if broken else ""))


if __name__ == "__main__":
    main()
