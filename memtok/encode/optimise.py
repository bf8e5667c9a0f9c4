"""The encode loop: a schedule's jobs optimised side by side, each result verified by greedy decoding.

`encode_loop` reads top-down. It asks the schedule (`memtok.encode.schedule`) for jobs as slots of the
batch free up (`memtok.encode.batch.Batch.step`: one forward and backward pass of all texts in play),
verifies the finished results `batch_size` at a time (or at once after a long optimisation), and
tells the schedule each verdict; the schedule queues any retry and gives back what is complete,
which the loop yields. `optimise` is the same batch without verification, for a fixed list of jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

from ..model.model import FrozenLM
from .batch import Batch
from .checkpoint import Checkpoint
from .jobs import Job, JobQueue, Jobs, Optimised, StepInfo
from .resolved import Resolved

# a result that took this long to optimise is verified at once, with any waiting, rather than held for a
# full batch: greedy decoding costs seconds, and a run killed in between would lose the minutes
VERIFY_AT_ONCE_SECONDS = 60.0
Done = TypeVar("Done", covariant=True)


class Schedule(Jobs, Protocol[Done]):
    """What the loop asks for jobs and tells each verdict (`memtok.encode.schedule`)."""

    def settle(self, result: Optimised, exact: bool) -> Done | None: ...

    def label(self, key: object) -> dict: ...


def optimise(lm: FrozenLM, resolved: Resolved, jobs: Iterable[Job],
             on_step: Callable[[StepInfo], None] | None = None, checkpoint: Checkpoint | None = None
             ) -> Iterator[Optimised]:
    """Yield an `Optimised` for each job, in the order they finish, unverified.

    At most `batch_size` texts and `max_batch_tokens` padded positions are in a pass; jobs may
    differ in K. With a storage dtype below float32 every forward pass sees the vectors rounded to
    it, so the exactness judged here is that of the memory as saved. With a `checkpoint`, a text
    saved there goes on from where it stopped, and the texts in flight are saved there when the
    loop is stopped (an exception, or the generator closed before its end).
    """
    queue, batch = JobQueue(jobs), Batch(lm, resolved, checkpoint)
    with batch.saved_on_stop():
        while queue or batch.busy():
            yield from batch.step(queue, on_step)


def encode_loop(lm: FrozenLM, resolved: Resolved, schedule: Schedule[Done],
                on_step: Callable[[StepInfo], None] | None = None, checkpoint: str | Path | None = None
                ) -> Iterator[Done]:
    """What `schedule` completes, as its jobs are optimised and verified.

    `on_step` is told each pass, every job known by the schedule's label for it. `checkpoint`: a
    file (`memtok.encode.checkpoint`) that texts saved at an earlier stop go on from; stopped early, the
    texts in flight are saved there (results optimised but not yet verified, each under
    `VERIFY_AT_ONCE_SECONDS`, are done again), and run to its end, it keeps only states never reached.
    """
    labelled = _labelled(on_step, schedule.label)
    with Batch(lm, resolved, checkpoint).running() as batch:
        pending: list[Optimised] = []
        while schedule or batch.busy() or pending:
            running = bool(schedule or batch.busy())
            finished = batch.step(schedule, labelled) if running else []
            for group in _to_verify(pending, finished, resolved.batch_size, ran_dry=not running):
                for result, exact in zip(group, batch.verify(group)):
                    complete = schedule.settle(result, exact)  # may queue a retry, first
                    if complete is not None:
                        yield complete


def _to_verify(pending: list[Optimised], finished: list[Optimised], size: int, ran_dry: bool
               ) -> Iterator[list[Optimised]]:
    """The results due for verification, taken out of `pending` as `finished` joins it: a group of
    `size`, one with a long optimisation in it at once, and all that wait when the optimiser ran dry
    (their verdicts may queue retries)."""
    for result in finished:
        pending.append(result)
        if len(pending) >= size or result.seconds >= VERIFY_AT_ONCE_SECONDS:
            yield pending[:]
            pending.clear()
    if ran_dry and pending:
        yield pending[:]
        pending.clear()


def _labelled(on_step: Callable[[StepInfo], None] | None,
              label: Callable[[object], dict]) -> Callable[[StepInfo], None] | None:
    """`on_step` with each text's job key turned into what the caller knows it by."""
    if on_step is None:
        return None

    def told(info: StepInfo) -> None:
        for point in info.texts:
            point.key = label(point.key)
        on_step(info)

    return told
