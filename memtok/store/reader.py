"""Reading a finished store: its index, and any memory by id."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from ..errors import MemtokError, NotAMemoryError
from ..format.memory import Memory
from .shards import ID, SHARD, load_from_shard, memory_id, read_shard_header


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
        header = read_shard_header(shard)
        if mem_id not in header:
            raise NotAMemoryError(f"{shard} does not hold memory {mem_id}, which the index places there")
        return load_from_shard(shard, mem_id, header[mem_id])

    def decode(self, codec, mem_id: str) -> str:
        """The text of one memory; the codec's model fingerprint must match (as for single files)."""
        return codec.decode(self[mem_id])

    def vectors(self, codec, teacher: str | None = None) -> tuple[list[str], torch.Tensor]:
        """The store's semantic keys as a table for the vector indexes people use (FAISS, usearch,
        LanceDB, Chroma): a memory id per segment, and [S, r] float32 unit vectors; a query's vector
        comes from `query_vector`, and the inner product is the vector search's cosine. A store of
        plain memories has none (refused), its vectors being no similarity embedding."""
        from .keys import read_keys
        from .search import memories_space, segment_keys

        stored = read_keys(self.root, codec, teacher)
        if stored is not None:
            rows, keys, _ = stored
            return [memory_id(int(r)) for r in rows], keys
        ids = [i for i in self if self.record(i)["status"] != "failed"]
        memories = [self[i] for i in ids]
        owners, keys = segment_keys(codec, memories, memories_space(codec, [m.semantic for m in memories], teacher))
        return [ids[int(o)] for o in owners], keys

    def query_vector(self, codec, query: str, teacher: str | None = None) -> torch.Tensor:
        """[r] unit: the query's vector in the space of this store's keys (`vectors`)."""
        from .search import memories_space, query_code

        first = next(i for i in self if self.record(i)["status"] != "failed")
        return query_code(codec, memories_space(codec, [self[first].semantic], teacher), query)

    def search(self, codec, query: str, top_n: int = 5, method: str = "likelihood", batch_size: int = 64,
               decode: bool = False, show_progress_bar: bool = False, scoring: str = "skip1",
               teacher: str | None = None) -> list:
        """The `top_n` memories most likely to hold `query`, best first (`memtok.store.search`; the
        likelihood method's `scoring` is one of its `SCORINGS`; the vector method's `teacher` must be
        the memories' own, which it is when None), as `Hit`s with their scores (and decoded texts
        with `decode`)."""
        from ..encode.progress import progress
        from .keys import read_keys
        from .search import METHODS, SCORINGS, Hit, best_cosines, likelihood_scores, query_code, top, vector_scores

        if method not in METHODS:
            raise MemtokError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")
        if scoring not in SCORINGS:
            raise MemtokError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
        ids = [i for i in self if self.record(i)["status"] != "failed"]
        if not ids:
            raise MemtokError(f"{self.root} holds no memories to search")
        if method == "vector" and (stored := read_keys(self.root, codec, teacher)) is not None:
            rows, keys, space = stored  # the store's keys: no memory is read
            order, owners = torch.unique(rows, return_inverse=True)
            scores = best_cosines(owners, keys, query_code(codec, space, query), len(order))
            hits = [Hit(memory_id(int(order[j])), s) for j, s in top(scores, top_n)]
            return self._decoded(codec, hits) if decode else hits
        memories = [self[i] for i in ids]
        for mem in memories:  # the model's own, and each fits it: refused before any pass
            codec.check_decodable(mem)
        bar = progress(sum(max(1, len(m.segments)) for m in memories), "searching", "segment",
                       disable=not show_progress_bar)
        try:
            scores = likelihood_scores(codec, memories, query, batch_size, bar.update, scoring) if method == "likelihood" \
                else vector_scores(codec, memories, query, teacher)
        finally:
            bar.close()
        hits = [Hit(ids[j], s) for j, s in top(torch.tensor(scores), top_n)]
        return self._decoded(codec, hits) if decode else hits

    def _decoded(self, codec, hits: list) -> list:
        """The hits with their texts: a text comes back exact (its sha256 checked) or not at all."""
        from ..format.header import sha256_text
        from .search import Hit

        mems = [self[h.id] for h in hits]
        texts = codec.decode(mems, check=False, show_progress_bar=False)
        checked = [sha256_text(t) == m.text_sha256 for t, m in zip(texts, mems)]
        return [Hit(h.id, h.score, t if ok else None, not ok) for h, t, ok in zip(hits, texts, checked)]
