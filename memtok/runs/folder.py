"""A run's folder (`memtok eval`, `memtok capacity`): its pinned settings, its results log, and the
summary, report and plots written from the log.

Results are one JSON line each, flushed and fsynced as soon as they are known, so a crash loses at
most the texts in flight; a line cut short by a kill is dropped when the file is opened again. The
settings are pinned in `run.json` on the first run; a rerun with settings that would change the
results is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..encode.resolved import Resolved
from ..encode.schedule import target_ids
from ..errors import MemtokError
from ..files import atomic_write, lock_folder, sweep_temporaries
from ..model.model import FrozenLM
from ..settings.config import SPEED_ONLY, EncodeConfig
from ..settings.recipes import Init, parse_recipe, recipe_spec
from .migrate import RENAMED, upgrade
from .provenance import environment
from .sources import Source

# The texts in flight when a run stopped (`memtok.encode.checkpoint`), taken up by the next run.
CHECKPOINT = "in-flight.safetensors"
# Each text's optimisation curve, with --log-steps (`memtok.encode.steplog`).
STEPS = "steps.jsonl"
# The wall time of each part of a run: each process that worked on it (a run stopped and resumed has several).
PARTS = "parts.json"
# Settings that do not change results: a rerun may differ in them.
# A recipe's name is a label (its fields are compared one by one).
# A model's source says where to find it; its fingerprint is what is compared.
FREE = ("command", "n_texts", "model", "model_source", "recipe.name", *SPEED_ONLY)


def refusals(lm: FrozenLM, texts: list[str]) -> dict[int, str]:
    """Why each text that cannot be encoded cannot (its index -> the error), so that a run over a
    dataset can record those as failed and encode the rest."""
    refused = {}
    for i, text in enumerate(texts):
        try:
            target_ids(lm, text)
        except MemtokError as exc:
            refused[i] = str(exc)
    return refused


def settings(lm: FrozenLM, resolved: Resolved, source: Source, command: str, **extra) -> dict:
    """What a run's results depend on (and how it was started), as plain JSON: the config with its
    recipe decided, and the learned start that recipe began from."""
    return pinned_settings(lm, resolved.config, resolved.start_name, source, command, **extra)


def pinned_settings(lm: FrozenLM, config: EncodeConfig, start_name: str, source: Source, command: str,
                    **extra) -> dict:
    """`settings` of a config whose recipe is decided and of the start it names (read only when
    that recipe begins from a learned start)."""
    start = {"start": start_name} if config.recipe.init is Init.LEARNED else {}
    return {"model": lm.name, "model_source": lm.source, "model_fingerprint": lm.fingerprint, **config.to_dict(), **start, "data": source.name,
            "data_sha256": source.sha256, **source.pinned(), "n_texts": len(source.texts), "command": command,
            **extra}


def with_pinned_recipe(config: EncodeConfig, pinned: Path) -> EncodeConfig:
    """`config` with the recipe the folder's settings file `pinned` holds, when the command names
    none: the default is decided once, on a folder's first run, so a learned start installed since
    never changes what a folder resumes with."""
    if config.recipe is not None or not pinned.exists():
        return config
    recipe = json.loads(pinned.read_text()).get("recipe")
    return config.replace(recipe=parse_recipe(recipe_spec(recipe))) if isinstance(recipe, dict) else config


def _flat(settings: dict) -> dict:
    """One level of nesting spelled out (`recipe.lr`), so that a recipe field is compared on its own."""
    return {f"{k}.{sub}" if isinstance(v, dict) else k: sv
            for k, v in settings.items() for sub, sv in (v.items() if isinstance(v, dict) else [(None, v)])}


def pin_settings(path: Path, settings: dict, free: Iterable[str] = FREE) -> None:
    """Record a job's settings on its first run; refuse a rerun that differs in any but the `free`
    ones, rather than mix results. A rerun's free settings (its command, batch size, lengths) are
    recorded over the earlier run's: the report describes the latest run, and its resume command is
    read from this file."""
    if path.exists():
        pinned = json.loads(path.read_text())
        before, now = _flat(upgrade(pinned)), _flat(upgrade(settings))
        # an option newer than the folder, left off (False, 0 or None), is the behaviour the folder was made with
        changed = [k for k in sorted(set(before) | set(now)) if k not in free and before.get(k) != now.get(k)
                   and (k in before or now[k] not in (False, None))]
        if changed:
            raise MemtokError(f"{path.parent} holds results made with other settings ({', '.join(changed)}); "
                              f"use another --out")
        renamed = {RENAMED.get(k, k): v for k, v in pinned.items()}
        settings = {**renamed, **{k: v for k, v in settings.items() if k in free}}
        if settings == pinned:
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2, sort_keys=True)))


class Parts:
    """The wall time of every part of a run (each process that worked on it), so that a resumed run's
    wall counts them all, as its texts' seconds do. Each part's wall is kept in `parts.json` when it
    writes its report, and each result it logs carries the part's wall so far: a part killed before its report still
    counts up to its last result (the texts it had in flight are done again)."""

    def __init__(self, folder: Path, records: list[dict]) -> None:
        self.path = folder / PARTS
        self.walls: dict[int, float] = {}
        if self.path.exists():
            self.walls = {int(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        for r in records:
            if isinstance(r.get("part"), int):
                self.walls[r["part"]] = max(self.walls.get(r["part"], 0.0), float(r["part_seconds"]))
        self.number = max(self.walls, default=0) + 1
        self.began = time.perf_counter()

    def now(self) -> float:
        """This part's wall time so far."""
        return time.perf_counter() - self.began

    def total(self) -> float:
        """The wall time of every part so far, this one included."""
        return sum(w for n, w in self.walls.items() if n != self.number) + self.now()

    def keep(self) -> None:
        """Record this part's wall so far (called with each report)."""
        self.walls[self.number] = round(self.now(), 3)
        walls = json.dumps({str(n): w for n, w in sorted(self.walls.items())})
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(walls))


class ResultsLog:
    def __init__(self, path: str | os.PathLike, key: str = "index") -> None:
        self.path = Path(path)
        self.key = key
        self.records: list[dict] = []
        self.reread()
        self.parts = Parts(self.path.parent, self.records)

    def reread(self) -> None:
        """The records as the file holds them: what a rerun resumes from. An interruption can land
        between writing a line and remembering it, so a stopped run's report reads the file again."""
        self.records = []
        if not self.path.exists():
            return
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
        """Log one result, stamped with this part of the run and its wall so far (`Parts`)."""
        record = {**record, "part": self.parts.number, "part_seconds": round(self.parts.now(), 3)}
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)


@contextmanager
def run_folder(out: Path, settings: dict, key: str = "index", free: Iterable[str] = FREE) -> Iterator[ResultsLog]:
    """Hold `out` for this run (one run per folder), pin its settings, clear what a kill left, and
    give its results log."""
    with lock_folder(out):
        pin_settings(out / "run.json", settings, free)
        sweep_temporaries(out)
        yield ResultsLog(out / "results.jsonl", key=key)


def write_outputs(out: Path, summary: dict, report: str, plot: Callable[[Path], None]) -> None:
    """summary.json (with the `environment` it was computed in), the plots and report.md, each whole
    or not at all."""
    summary = {**summary, "environment": environment()}
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, sort_keys=True)))
    plot(out)
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(report))
