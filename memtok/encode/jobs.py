"""What the optimisation loop takes and gives: a job per try, its outcome, and each pass's standing.

The plan, an encode's bookkeeping, the progress display and the step log all speak these types;
the optimiser (`memtok.encode.batch`) is the only thing that makes results.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class Job:
    """One optimisation to run: the ids the vectors must make the model produce, and how many vectors."""

    key: object  # the caller's handle, given back in `Optimised.key`
    targets: list[int]  # what greedy decoding must give: a text's ids and EOS (capacity runs may omit EOS)
    k: int
    max_steps: int | None = None  # None: the recipe's


class Jobs(Protocol):
    """What the optimiser's batch takes jobs from as its slots free up."""

    def __len__(self) -> int: ...

    def head(self) -> Job: ...

    def pop(self) -> Job: ...


class JobQueue:
    """Jobs waiting for a slot, in order; a retry may jump the queue (`put_first`)."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs = deque(jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def head(self) -> Job:
        return self._jobs[0]

    def pop(self) -> Job:
        return self._jobs.popleft()

    def put(self, job: Job) -> None:
        self._jobs.append(job)

    def put_first(self, job: Job) -> None:
        self._jobs.appendleft(job)


@dataclass
class Optimised:
    """One job's outcome, before greedy verification."""

    key: object
    vectors: torch.Tensor  # [K, d], float32 stored values (`memtok.model.precision.stored_form`), on the CPU
    steps: int
    seconds: float  # its share of the wall time of the passes it was in: texts' seconds add up to a run's
    elapsed_seconds: float  # from its first pass to its last, whatever else shared those passes
    loss: float  # mean cross-entropy per target in play (EOS included) of `vectors`
    min_margin: float  # smallest (target logit - best other logit) over the targets in play
    token_accuracy: float  # teacher-forced share of targets (EOS included) whose argmax is right; with a
    # growing target (`Recipe.grow_tokens`), targets not yet in play count as wrong
    converged: bool  # every argmax right with at least the recipe's margin
    targets: list[int]  # the job's, which greedy decoding must give
    restarts: int = 0  # restarts after a stall (`Recipe.restart_after`)
    ended: float = field(default_factory=time.perf_counter)  # when it was made (`time.perf_counter`)

    @property
    def began(self) -> float:
        """When its first pass was (on `time.perf_counter`'s clock)."""
        return self.ended - self.elapsed_seconds


@dataclass
class TextStep:
    """One text's standing on one forward pass: a point of its optimisation curve."""

    key: object  # the job's
    k: int
    step: int  # updates before this pass: 0 is the initial vectors themselves
    loss: float
    accuracy: float
    margin: float
    done: bool  # its last pass: exact with the recipe's margin, or out of steps or patience
    restarts: int = 0  # restarts so far (`Recipe.restart_after`): the first pass of each sees its initial vectors


@dataclass
class StepInfo:
    """What a progress display and a step log need after each step."""

    active: int  # texts in this step's forward pass
    done: int
    total: int
    loss: float
    accuracy: float
    texts: list[TextStep]
