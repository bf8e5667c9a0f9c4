"""The optimisation curve of each text, kept: loss, token accuracy and margin every N steps.

Papers in this field plot exactly these curves, and they say where a text stalls (a margin that
never turns positive, an accuracy that swings). One JSON line per logged point, appended and
flushed as it comes, so a stopped run keeps its curves and a resumed one carries them on (a text
redone from scratch after a kill logs its curve again).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

from .jobs import StepInfo


class StepLog:
    """An `on_step` that appends each text's standing at step 0, every `every` steps and its last step."""

    def __init__(self, path: str | os.PathLike, every: int, label: Callable[[object], dict]) -> None:
        if every < 1:
            raise ValueError(f"log every N steps needs N >= 1, got {every}")
        self.path, self.every, self.label = Path(path), every, label
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run, closed by close()

    def __call__(self, info: StepInfo) -> None:
        rows = [{**self.label(p.key), "k": p.k, "step": p.step, "loss": round(p.loss, 5),
                 "accuracy": round(p.accuracy, 5), "margin": round(p.margin, 4) if math.isfinite(p.margin) else None,
                 "done": p.done, "restarts": p.restarts}
                for p in info.texts if p.step % self.every == 0 or p.done]
        if rows:
            self._file.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
            self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_steps(path: str | os.PathLike) -> list[dict]:
    """The rows of a step log; a last line cut short by a kill is left out."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
