"""An append-only JSONL results file that survives being killed at any moment.

Each record is one line, flushed and fsynced as soon as it is known, so a crash loses at most the
texts in flight; a line cut short by a kill is dropped when the file is opened again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import MemtokError
from .files import atomic_write


def pin_settings(path: Path, settings: dict, keys: Iterable[str]) -> None:
    """Record a job's settings on its first run; refuse a rerun whose `keys` differ, rather than mix results."""
    if path.exists():
        before = json.loads(path.read_text())
        changed = [k for k in keys if before.get(k) != settings.get(k)]
        if changed:
            raise MemtokError(f"{path.parent} holds results made with other settings ({', '.join(changed)}); "
                              f"use another --out")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2, sort_keys=True)))


class ResultsLog:
    def __init__(self, path: str | os.PathLike, key: str = "index") -> None:
        self.path = Path(path)
        self.key = key
        self.records: list[dict] = []
        if self.path.exists():
            self._recover()

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]  # a final line without its newline was cut short
        if len(complete) != len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for line in complete.decode("utf-8").splitlines():
            if line.strip():
                self.records.append(json.loads(line))

    @property
    def done(self) -> set:
        return {r[self.key] for r in self.records}

    def drop(self, keys: list) -> None:
        """Forget these records (their work is to be done again), rewriting the file atomically."""
        if not keys:
            return
        gone = set(keys)
        self.records = [r for r in self.records if r[self.key] not in gone]
        lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in self.records)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
