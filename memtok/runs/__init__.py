"""Runs over a dataset, built on `MemoryCodec`: `memtok eval` (how many texts come back exactly) and
`memtok capacity` (how many tokens K vectors hold), each resumable in its own folder."""
