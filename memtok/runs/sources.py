"""Texts to evaluate or encode: a CSV or TSV, JSONL, JSON or parquet file, a plain text file, or a
Hugging Face dataset (a Hub id or a folder in the Hub's layout), streamed."""

from __future__ import annotations

import csv
import hashlib
import itertools
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
    subset: str | None = None  # a hub dataset's subset (its config name), None: its default

    @property
    def first(self) -> int:
        """The row number of the first text: what results and stores number the texts from."""
        return int(self.rows.split(":")[0] or 0) if self.rows else 0

    def pinned(self) -> dict:
        """What a run folder records of where its texts came from, beyond the name and hash."""
        return {k: v for k, v in (("rows", self.rows), ("split", self.split), ("subset", self.subset))
                if v is not None}


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # `name` or `owner/name`
FILE_KINDS = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet", ".txt", ".md")


def read_source(data: str, column: str | None = None, limit: int | None = None, rows: str | None = None,
                split: str | None = None, subset: str | None = None) -> Source:
    """Read DATA: `.csv` / `.tsv` (column `chunk` by default), `.jsonl` or a `.json` array (field
    `text`, or strings), `.parquet` (column `text`), another existing file (one text per
    blank-line-separated block), or a Hugging Face dataset: a Hub id (`name` or `owner/name`) or a
    folder in the Hub's layout, its `subset` and `split` ("train" by default), streamed so that only
    the rows taken are read. `rows` (START:END) takes a range of rows, and `limit` the first N of
    those in file order, as the paper's evaluation does.
    """
    if limit is not None and limit < 1:
        raise MemtokError(f"limit must be at least 1, got {limit}")
    start, end = row_range(rows)
    stop = end if limit is None else min(end if end is not None else start + limit, start + limit)
    if os.path.isfile(data):
        if split is not None or subset is not None:
            raise MemtokError(f"--split and --subset choose a part of a hub dataset; {data} is a file")
        texts, sha = _file(data, column), hashlib.sha256(_read_bytes(data)).hexdigest()
        texts = texts[start:stop]
    elif os.path.isdir(data) or (HUB_ID.fullmatch(data) and not data.lower().endswith(FILE_KINDS)):
        texts, sha = _hub(data, column or "text", split or "train", subset, start, stop), None
    else:
        raise MemtokError(f"no such file: {data}")
    if not texts:
        raise MemtokError(f"{data} holds no texts" + (f" in rows {rows}" if rows else ""))
    return Source(data, texts, sha, rows, split, subset)


def _file(path: str, column: str | None) -> list[str]:
    lower = path.lower()
    if lower.endswith(".parquet"):
        return _parquet(path, column or "text")
    raw = _read_bytes(path)
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MemtokError(f"{path} is not valid UTF-8 (byte {exc.start})") from None
    if lower.endswith((".csv", ".tsv")):
        return _csv(content, column or "chunk", path, "\t" if lower.endswith(".tsv") else ",")
    if lower.endswith((".jsonl", ".ndjson")):
        return _jsonl(content, column or "text", path)
    if lower.endswith(".json"):
        return _json_array(content, column or "text", path)
    return [b.strip("\n") for b in re.split(r"\n[ \t]*\n", content) if b.strip()]


def row_range(rows: str | None) -> tuple[int, int | None]:
    """START:END (Python's slice, either end may be left out) as (start, end or None)."""
    if rows is None:
        return 0, None
    start, sep, end = rows.partition(":")
    try:
        if not sep or int(start or 0) < 0 or int(end or 0) < 0:
            raise ValueError
        return int(start or 0), int(end) if end else None
    except ValueError:
        raise MemtokError(f"a row range is START:END with rows from 0, e.g. 100:200 or 100:, got {rows!r}") from None


def read_rows(texts: list[str], rows: str | None) -> list[str]:
    """The rows START:END (Python's slice, either end may be left out) of `texts`; all for None."""
    start, end = row_range(rows)
    return texts[start:end]


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise MemtokError(f"cannot read {path}: {exc.strerror}") from None


def _csv(content: str, column: str, name: str, delimiter: str = ",") -> list[str]:
    reader = csv.DictReader(content.splitlines(keepends=True), delimiter=delimiter)
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


def _json_array(content: str, field: str, name: str) -> list[str]:
    try:
        records = json.loads(content)
    except json.JSONDecodeError as exc:
        raise MemtokError(f"{name}: not valid JSON (line {exc.lineno}); one record a line is .jsonl") from None
    if not isinstance(records, list):
        raise MemtokError(f"{name}: a JSON file of texts is an array (of strings, or of objects with {field!r})")
    texts = [r if isinstance(r, str) else r.get(field) if isinstance(r, dict) else None for r in records]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise MemtokError(f"{name}, item {bad}: neither a string nor an object with a string {field!r}; "
                          "pick the field with --column")
    return texts


def _parquet(path: str, column: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MemtokError(f"reading {path} needs pyarrow: pip install 'memtok[datasets]'") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise MemtokError(f"cannot read {path} as parquet: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    if column not in table.column_names:
        raise MemtokError(f"{path} has no column {column!r} (columns: {', '.join(table.column_names)}); "
                          "pick one with --column")
    return [str(t) for t in table.column(column).to_pylist()]


def _hub(name: str, column: str, split: str, subset: str | None, start: int, stop: int | None) -> list[str]:
    """Rows start..stop of a dataset's split, streamed: nothing past `stop` is read."""
    try:
        import datasets
    except ImportError:
        raise MemtokError(f"{name!r} is not a file; reading a hub dataset needs: pip install 'memtok[datasets]'") from None
    try:
        ds = datasets.load_dataset(name, subset, split=split, streaming=True)
        columns = ds.column_names or list(ds.features or {})
        if columns and column not in columns:
            raise MemtokError(f"dataset {name} has no column {column!r} (columns: {', '.join(columns)}); "
                              "pick one with --column")
        return [str(row[column]) for row in itertools.islice(ds, start, stop)]
    except MemtokError:
        raise
    except Exception as exc:  # noqa: BLE001 - network and hub errors come in many types
        raise MemtokError(f"could not load dataset {name!r}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
