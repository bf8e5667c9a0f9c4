"""Progress on long work: a tqdm bar on a terminal, a plain line now and then in a log.

A bar redraws itself with carriage returns, which a log file (CI, `nohup`, a cluster job) keeps
as thousands of updates on one line; there, a line every `MEMTOK_PROGRESS_SECONDS` (30) is written
instead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from .jobs import StepInfo


class PlainProgress:
    """tqdm's `update`/`set_postfix`/`close`, writing a whole line at most every `interval` seconds."""

    def __init__(self, total: int, desc: str, unit: str, interval: float, file: TextIO) -> None:
        self.total, self.desc, self.unit, self.interval, self.file = total, desc, unit, interval, file
        self.n = 0
        self.first: int | None = None  # what was done before this run's first update (a resumed run's)
        self.postfix: dict = {}
        self.began = self.shown = time.monotonic()

    def update(self, n: int = 1) -> None:
        if self.first is None:
            self.first = self.n
        self.n += n
        now = time.monotonic()
        if now - self.shown >= self.interval:
            self.shown = now
            done, elapsed = self.n - self.first, now - self.began
            eta = f", ETA {_duration((self.total - self.n) * elapsed / done)}" if done and self.n < self.total else ""
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} {self.unit}s, {elapsed:.0f} s{eta}{extra}",
                  file=self.file, flush=True)

    def set_postfix(self, refresh: bool = True, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        """Nothing to clear: the command's own summary line follows."""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel, whose output is no terminal but draws tqdm.auto's widget."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress(total: int, desc: str, unit: str, disable: bool = False, file: TextIO | None = None):
    """A tqdm bar when `file` (standard error) is a terminal or a notebook's (tqdm.auto: a widget
    there), else a `PlainProgress`; nothing when `disable`."""
    file = file or sys.stderr
    if not disable and not file.isatty() and not in_notebook():
        return PlainProgress(total, desc, unit, float(os.environ.get("MEMTOK_PROGRESS_SECONDS", "30")), file)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, mininterval=0.5, file=file)


def show_steps(bar) -> Callable[[StepInfo], None]:
    """An `on_step` that writes the batch's step, loss and accuracy into a bar's postfix: one text
    can take minutes, and a bar that counts only finished texts would look stuck (a segmented text
    finishes only with its last segment: `optimised` counts segments and retries too)."""
    steps = 0

    def on_step(info: StepInfo) -> None:
        nonlocal steps
        steps += 1
        bar.set_postfix(step=steps, optimised=f"{info.done}/{info.total}", active=info.active,
                        loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.3f}", refresh=False)
        bar.update(0)

    return on_step
