"""Texts to evaluate or encode: a CSV, a JSONL file, a plain text file, or a Hugging Face dataset."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass

from ..errors import MemtokError


@dataclass(frozen=True)
class Source:
    """Texts in file order, with where they came from."""

    name: str
    texts: list[str]
    sha256: str | None  # of the file's bytes; None for a hub dataset
    rows: str | None = None  # the row range taken (`read_rows`), None: from the first
    split: str | None = None  # a hub dataset's split, None: "train" (or a file)

    @property
    def first(self) -> int:
        """The row number of the first text: what results and stores number the texts from."""
        return int(self.rows.split(":")[0] or 0) if self.rows else 0

    def pinned(self) -> dict:
        """What a run folder records of where its texts came from, beyond the name and hash."""
        return {k: v for k, v in (("rows", self.rows), ("split", self.split)) if v is not None}


def read_source(data: str, column: str | None = None, limit: int | None = None, rows: str | None = None,
                split: str | None = None) -> Source:
    """Read DATA: `.csv` (column `chunk` by default), `.jsonl` (field `text`), another existing file
    (one text per blank-line-separated block), or else a Hugging Face dataset name (its `split`,
    "train" by default). `rows` (START:END) takes a range of rows, and `limit` the first N of
    those in file order, as the paper's evaluation does.
    """
    if limit is not None and limit < 1:
        raise MemtokError(f"limit must be at least 1, got {limit}")
    if os.path.isdir(data):
        raise MemtokError(f"is a directory, not a data file: {data}")
    if split is not None and os.path.exists(data):
        raise MemtokError(f"--split chooses a part of a hub dataset; {data} is a file")
    if os.path.isfile(data):
        raw = _read_bytes(data)
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MemtokError(f"{data} is not valid UTF-8 (byte {exc.start})") from None
        lower = data.lower()
        if lower.endswith(".csv"):
            texts = _csv(content, column or "chunk", data)
        elif lower.endswith((".jsonl", ".ndjson")):
            texts = _jsonl(content, column or "text", data)
        else:
            texts = [b for b in re.split(r"\n[ \t]*\n", content) if b.strip()]
            texts = [b.strip("\n") for b in texts]
        sha = hashlib.sha256(raw).hexdigest()
    elif os.path.sep in data or data.startswith("."):
        raise MemtokError(f"no such file: {data}")
    else:
        texts, sha = _hub(data, column or "text", split or "train"), None
    texts = read_rows(texts, rows)
    texts = texts[:limit] if limit else texts
    if not texts:
        raise MemtokError(f"{data} holds no texts" + (f" in rows {rows}" if rows else ""))
    return Source(data, texts, sha, rows, split)


def read_rows(texts: list[str], rows: str | None) -> list[str]:
    """The rows START:END (Python's slice, either end may be left out) of `texts`; all for None."""
    if rows is None:
        return texts
    start, sep, end = rows.partition(":")
    try:
        if not sep or int(start or 0) < 0 or int(end or 0) < 0:
            raise ValueError
        return texts[int(start) if start else None:int(end) if end else None]
    except ValueError:
        raise MemtokError(f"a row range is START:END with rows from 0, e.g. 100:200 or 100:, got {rows!r}") from None


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MemtokError(f"cannot read {path}: {exc.strerror}") from None


def _csv(content: str, column: str, name: str) -> list[str]:
    reader = csv.DictReader(content.splitlines(keepends=True))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise MemtokError(f"{name} has no column {column!r} (columns: {', '.join(reader.fieldnames or [])}); "
                          f"pick one with --column")
    return [row[column] for row in reader]


def _jsonl(content: str, field: str, name: str) -> list[str]:
    texts = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise MemtokError(f"{name}, line {n}: not valid JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise MemtokError(f"{name}, line {n}: no string field {field!r}; pick one with --column")
        texts.append(record[field])
    return texts


def _hub(name: str, column: str, split: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise MemtokError(f"{name!r} is not a file; reading a hub dataset needs: pip install 'memtok[datasets]'") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise MemtokError(f"could not load dataset {name!r}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if column not in ds.column_names:
        raise MemtokError(f"dataset {name} has no column {column!r} (columns: {', '.join(ds.column_names)})")
    return list(ds[column])
