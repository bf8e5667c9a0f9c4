"""Texts part-way through their optimisation, kept across an interrupted run.

When a run stops (Ctrl-C, SIGTERM, an error), each text still being optimised is saved with its
learned parameters, their optimiser moments, its step and its best so far, and the next run with
the same file takes each text up at that step instead of from scratch. One vector for a 250-token
text runs up to 2000 steps, tens of minutes on a CPU, so without this a long run done in parts
would lose every text in flight at each stop.

One safetensors file (tensors and a JSON header: loading it cannot run code), written whole or not
at all. A text is found again by what it learns (its targets, K and step cap), not by its place in
the run, and only under the model, recipe, storage dtype and prompt it was saved with.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..files import atomic_write, set_aside
from ..model.model import FrozenLM
from .resolved import Resolved

logger = logging.getLogger(__name__)
HEADER_KEY = "memtok.checkpoint"
VERSION = 3  # 3: a text's restarts named as memories name them (restarts, restart_best)


@dataclass
class SlotState:
    """Everything one text's optimisation needs to go on where it stopped."""

    params: list[torch.Tensor]  # the learned parameters, in `memtok.encode.learned_vectors.parameters`' order
    moments: list[list[torch.Tensor]]  # per parameter, its optimiser's running moments (none for plain SGD)
    step: int
    span: int  # targets in play (a growing target)
    since_best: int
    seconds: float  # optimisation time spent before the stop
    best: list[float] | None = None  # the best standing so far (`memtok.encode.slot.Judged`), and its vectors
    best_vectors: torch.Tensor | None = None
    shared_seconds: float = 0.0  # its share of the passes it was in (`memtok.encode.jobs.Optimised.seconds`)
    restarts: int = 0  # restarts after a stall (`memtok.settings.recipes.Recipe.restart_after`)
    steps_before: int = 0  # steps spent before the latest restart
    restart_best: float = -1.0  # the latest restart's best accuracy, and the steps since it
    stalled: int = 0

    # the counters a slot keeps under the same names, saved and restored as they are
    @classmethod
    def counters(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in _NOT_COUNTERS)

    def header(self) -> dict:
        """Everything but the tensors, as the checkpoint's JSON header holds it."""
        return {"params": len(self.params), "moments": [len(m) for m in self.moments], "step": self.step,
                "seconds": self.seconds, "best": self.best, **{name: getattr(self, name) for name in self.counters()}}

    @classmethod
    def from_header(cls, t: dict, get) -> SlotState:
        """The state a `header` describes, its tensors read by `get(name)` under the text's key."""
        return cls(params=[get(f"param.{i}") for i in range(t["params"])],
                   moments=[[get(f"moment.{i}.{j}") for j in range(n)] for i, n in enumerate(t["moments"])],
                   step=t["step"], seconds=t["seconds"], best=t["best"],
                   best_vectors=get("best") if t["best"] is not None else None,
                   **{name: t[name] for name in cls.counters()})


# what a slot does not keep under the same name: its tensors, its step and time, its best
_NOT_COUNTERS = {"params", "moments", "step", "seconds", "best", "best_vectors"}


def text_key(targets: list[int], k: int, max_steps: int) -> str:
    """What a saved text is found by: the same ids with the same K and step cap."""
    return hashlib.sha256(json.dumps([targets, k, max_steps]).encode()).hexdigest()[:32]


class Checkpoint:
    """The texts in flight of one run: those read at its start, until taken up, and those saved at its stop."""

    def __init__(self, path: str | Path, lm: FrozenLM, resolved: Resolved) -> None:
        self.path = Path(path)
        self.settings = resolved.checkpoint_key(lm)
        self.device = lm.device
        self.waiting: dict[str, SlotState] = self._read() if self.path.exists() else {}
        if self.waiting:
            logger.info("%d text(s) in flight at the last stop go on from %s", len(self.waiting), self.path)

    def take(self, key: str) -> SlotState | None:
        """The saved state of this text, once: a later try of the same text starts afresh."""
        return self.waiting.pop(key, None)

    def give_back(self, key: str, state: SlotState) -> None:
        """A state taken but not used (its slot could not be made): the next take finds it again."""
        self.waiting[key] = state

    def save(self, in_flight: dict[str, SlotState]) -> None:
        """Keep the texts in flight, with any read at the start and not taken up (this run did not reach them)."""
        states = {**self.waiting, **in_flight}
        self._keep(states)
        if states:
            logger.info("%d text(s) in flight saved to %s; the same command takes them up at their step",
                        len(states), self.path)

    def finish(self) -> None:
        """The run ended with nothing in flight: keep only states this run never reached, if any."""
        self._keep(self.waiting)

    def _keep(self, states: dict[str, SlotState]) -> None:
        if states:
            self._write(states)
        else:
            self.path.unlink(missing_ok=True)

    def _write(self, states: dict[str, SlotState]) -> None:
        tensors, texts = {}, {}
        for key, s in states.items():
            for i, p in enumerate(s.params):
                tensors[f"{key}.param.{i}"] = p
                for j, m in enumerate(s.moments[i]):
                    tensors[f"{key}.moment.{i}.{j}"] = m
            if s.best_vectors is not None:
                tensors[f"{key}.best"] = s.best_vectors
            texts[key] = s.header()
        header = {"version": VERSION, "settings": self.settings, "texts": texts}
        tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()}
        atomic_write(self.path, lambda tmp: save_file(tensors, tmp, metadata={HEADER_KEY: json.dumps(header)}))

    def _read(self) -> dict[str, SlotState]:
        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                header = json.loads((f.metadata() or {})[HEADER_KEY])
                if header.get("version") != VERSION or header.get("settings") != self.settings:
                    logger.warning("%s was saved by another memtok or under another model, recipe, dtype or "
                                   "prompt; its texts start afresh", self.path)
                    return {}

                def getter(key: str):
                    return lambda name: f.get_tensor(f"{key}.{name}").to(self.device)

                return {key: SlotState.from_header(t, getter(key)) for key, t in header["texts"].items()}
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
            set_aside(self.path, f"unreadable checkpoint: {exc}")
            return {}
