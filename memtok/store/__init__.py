"""Memory stores: a corpus of memories in safetensors shards with a Parquet index, written by one
process or many (`memtok encode-corpus`) and read by id (`MemoryStore`)."""

from .reader import MemoryStore

__all__ = ["MemoryStore"]
