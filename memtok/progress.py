"""Progress on long work: a tqdm bar on a terminal, a plain line now and then in a log.

A bar redraws itself with carriage returns, which a log file (CI, `nohup`, a cluster job) keeps
as thousands of updates on one line; there, a line every `MEMTOK_PROGRESS_SECONDS` (30) is written
instead.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm


class PlainProgress:
    """tqdm's `update`/`set_postfix`/`close`, writing a whole line at most every `interval` seconds."""

    def __init__(self, total: int, desc: str, unit: str, interval: float, file: TextIO) -> None:
        self.total, self.desc, self.unit, self.interval, self.file = total, desc, unit, interval, file
        self.n = 0
        self.postfix: dict = {}
        self.started = self.shown = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.shown >= self.interval:
            self.shown = now
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s, {now - self.started:.0f} s{extra}",
                  file=self.file, flush=True)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        """Nothing to clear: the command's own summary line follows."""


def progress(total: int, desc: str, unit: str, disable: bool = False, file: TextIO | None = None):
    """A tqdm bar when `file` (standard error) is a terminal, else a `PlainProgress`; nothing when `disable`."""
    file = file or sys.stderr
    if not disable and not file.isatty():
        return PlainProgress(total, desc, unit, float(os.environ.get("MEMTOK_PROGRESS_SECONDS", "30")), file)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, mininterval=0.5, file=file)
