"""The optimiser's batch: the texts of one padded pass, and one step of all of them.

A padded batch of `batch_size` slots (`memtok.encode.slot.TextSlot`), each holding one text with its own
vectors and optimiser. Every step is one forward and backward pass of the frozen model over the
whole batch (`memtok.model.forward`); a text leaves its slot the moment it is done (or given up), and the
next job of the queue it is given takes the slot at the next step, so one hard text never holds
the others back. Out of memory, the batch halves and the texts set aside wait with their state.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..decode.greedy import verify
from ..errors import DoesNotFitError
from ..model.forward import padded_pass, vocab_distance
from ..model.layout import Layout
from ..model.model import FrozenLM
from ..model.precision import model_inputs
from ..model.recompute import layers_recomputed
from .checkpoint import Checkpoint
from .jobs import Job, Jobs, Optimised, StepInfo, TextStep
from .resolved import Resolved
from .slot import Judged, TextSlot
from .vector_optimizer import VectorOptimizer

logger = logging.getLogger(__name__)


def batch_pass(lm: FrozenLM, slots: list[TextSlot]) -> tuple[list[Judged], torch.Tensor]:
    """Each text's standing on one padded forward pass, and the per-text losses to back-propagate.
    The texts of a batch share one recipe."""
    recipe = slots[0].recipe
    vectors = [s.input_vectors() for s in slots]
    seqs = [s.inputs(v) for v, s in zip(vectors, slots)]
    ce, right, margin, rows, n = padded_pass(lm, seqs, [s.job.targets[:s.span] for s in slots],
                                             [s.first_target for s in slots], recipe.bf16)
    zeros = torch.zeros(len(slots), device=ce.device)  # where the last layer's states came back
    right_count = zeros.index_add(0, rows, right.float())
    min_margin = torch.full_like(zeros, torch.inf).scatter_reduce(0, rows, margin, "amin")
    weight = 1.0 + recipe.wrong_weight * (~right).float()
    if recipe.first_weight != 1.0 or recipe.eos_weight != 1.0:  # the positions are each text's targets, in order
        weight = weight * torch.cat([s.position_weights()[:s.span] for s in slots]).to(ce.device)
    per_text = zeros.index_add(0, rows, ce * weight) / n
    if recipe.vocab_weight:
        per_text = per_text + recipe.vocab_weight * torch.stack([vocab_distance(lm, v) for v in vectors]).to(ce.device)
    # the step's one read from the device: what each text's standing needs
    n_right, margins, losses = torch.stack([right_count, min_margin, per_text.detach()]).tolist()
    judged = [Judged(r / len(s.targets), m, loss, int(r)) for r, m, loss, s in zip(n_right, margins, losses, slots)]
    return judged, per_text


def update(slots: list[TextSlot]) -> None:
    """One optimiser step for each of these texts (`VectorOptimizer.update_all`: a few kernels for
    all, each text with its own moments and step), then a restart for any that asks for one. A
    text whose loss was not a number makes no step: it restarts, its best kept."""
    going = []
    for s in slots:
        if not s.finite:
            s.drop_grads()
            s.restart()
            continue
        if s.recipe.clip:  # one norm over this text's parameters, as torch.nn.utils.clip_grad_norm_
            torch.nn.utils.clip_grad_norm_(s.learned.params, s.recipe.clip)
        going.append(s)
    params = [p for s in going for p in s.learned.params]
    VectorOptimizer.update_all([opt for s in going for opt in s.opts], params, [p.grad for p in params])
    for s in going:
        s.drop_grads()
        if s.wants_restart():
            s.restart()


def free_memory() -> None:
    """Give the memory of a failed pass back to the device (its tensors are gone with its exception)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Batch:
    """The texts in play and those set aside; `step` takes jobs from a queue as slots free up."""

    def __init__(self, lm: FrozenLM, resolved: Resolved, checkpoint: Checkpoint | str | Path | None = None) -> None:
        """`checkpoint` (one open, or its file): a text saved there goes on from where it stopped."""
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            checkpoint = Checkpoint(checkpoint, lm, resolved)
        self.lm, self.resolved, self.checkpoint = lm, resolved, checkpoint
        self.slots: list[TextSlot] = []
        self.parked: deque[TextSlot] = deque()  # texts set aside, with their state, after running out of memory
        self.limit = resolved.batch_size
        self.done = 0

    def busy(self) -> bool:
        return bool(self.slots or self.parked)

    @contextmanager
    def saved_on_stop(self) -> Iterator[None]:
        """On a stop (Ctrl-C, SIGTERM, an error, a generator closed by its caller), the texts in play
        and set aside go to the checkpoint, if there is one."""
        try:
            yield
        except BaseException:
            if self.checkpoint is not None:
                self.checkpoint.save({s.key(): s.snapshot() for s in [*self.slots, *self.parked]})
            raise

    @contextmanager
    def running(self) -> Iterator[Batch]:
        """A whole run: layers recomputed in the backward pass where the settings ask, the texts in
        flight saved on a stop, and at its end only states never reached kept in the checkpoint."""
        with layers_recomputed(self.lm, self.resolved.recompute_layers), self.saved_on_stop():
            yield self
        if self.checkpoint is not None:
            self.checkpoint.finish()

    def verify(self, done: list[Optimised]) -> list[bool]:
        """Whether greedy decoding from each result's vectors, as stored, gives its targets; the
        verification's time is shared among the results, as a pass's is."""
        began, resolved = time.perf_counter(), self.resolved
        verdicts = _verdicts(self.lm, resolved.layout,
                             [model_inputs(e.vectors, resolved.storage, resolved.frame) for e in done],
                             [e.targets for e in done])
        share = (time.perf_counter() - began) / len(done)
        for result in done:
            result.seconds += share
        return verdicts

    def step(self, queue: Jobs, on_step: Callable[[StepInfo], None] | None = None) -> list[Optimised]:
        """One pass: free slots filled (texts set aside first, then `queue`), each text judged on the
        logits of its vectors, the texts that are done out, one update of the others. Returns the
        results of the texts that are done, in slot order."""
        self._refill(queue)
        began, judged = time.perf_counter(), None
        try:
            judged, per_text = batch_pass(self.lm, self.slots)
        except torch.OutOfMemoryError:
            pass  # backed off below, once the exception no longer holds the pass's tensors
        if judged is None:
            self.slots = self._back_off(self.slots)
            return []
        began = _share(self.slots, began)
        results = [s.settle(j) for s, j in zip(self.slots, judged)]
        still = [s for s, r in zip(self.slots, results) if r is None]
        ended = [i for i, r in enumerate(results) if r is not None]
        self.done += len(ended)
        waiting = len(queue) + len(self.parked)
        backed = self._backward(still, per_text)
        if on_step is not None and (backed or ended):
            # a pass whose backward ran out of memory is done again: only its finished texts are told now
            told = range(len(results)) if backed else ended
            on_step(_step_info([self.slots[i] for i in told], [judged[i] for i in told], [results[i] for i in told],
                               self.done, waiting + (0 if backed else len(still))))
        self.slots = self._learn(still, backed, began, len(self.slots))
        return [results[i] for i in ended]

    def _backward(self, still: list[TextSlot], per_text: torch.Tensor) -> bool:
        """The backward pass of the texts still in play; False where it ran out of memory."""
        if not still:
            return True
        try:
            per_text.sum().backward()
            return True
        except torch.OutOfMemoryError:
            return False  # backed off in `_learn`, once the exception no longer holds the pass's tensors

    def _learn(self, still: list[TextSlot], backed: bool, began: float, in_pass: int) -> list[TextSlot]:
        """One update of the texts still in play after their backward pass. Where it ran out of
        memory, no update is made and the pass is not counted: the texts go on from where they were,
        half of them waiting (`_back_off`), or a lone text that shared the pass with finished ones alone
        (not refused as too large: their activations were held too)."""
        if backed:
            update(still)
            _share(still, began)
            return still
        for s in still:
            s.unsettle()
        if len(still) == 1 and in_pass > 1:
            still[0].drop_grads()
            free_memory()
            self.limit = 1
            return still
        return self._back_off(still)

    def _refill(self, queue: Jobs) -> None:
        """Fill free slots: texts set aside first, then jobs from `queue` (each taking up a saved
        state of its text, if the checkpoint has one), within the limit and the token budget. A new
        text that runs out of memory as it is made lowers the limit to the texts in play, and its job
        waits at the head of the queue."""
        resolved = self.resolved
        prompt = len(resolved.layout.prefix_ids) + len(resolved.layout.infix_ids)
        while self.parked and len(self.slots) < self.limit:
            self.slots.append(self.parked.popleft())
        while queue and len(self.slots) < self.limit and _fits(self.slots, queue.head(), prompt,
                                                                  resolved.max_batch_tokens):
            job, slot = queue.head(), None
            try:
                slot = TextSlot(self.lm, job, resolved, self.checkpoint)
            except torch.OutOfMemoryError:
                pass
            if slot is None:
                if not self.slots:
                    raise DoesNotFitError(len(job.targets), job.k, self.lm.device)
                logger.warning("out of memory making a text's vectors beside %d others: going on with at most %d "
                               "at a time", len(self.slots), len(self.slots))
                free_memory()
                self.limit = len(self.slots)
                return
            self.slots.append(slot)
            queue.pop()

    def _back_off(self, slots: list[TextSlot]) -> list[TextSlot]:
        """After running out of memory in a pass: half the texts go on, the others wait (their vectors,
        moments and steps kept) and take the next free slots; the batch stays at that size from then
        on. A lone text that does not fit is refused with one line that says what would make it fit."""
        if len(slots) <= 1:
            raise DoesNotFitError(len(slots[0].job.targets), slots[0].job.k, self.lm.device)
        keep = len(slots) // 2
        for s in slots:
            s.drop_grads()
        self.parked.extendleft(reversed(slots[keep:]))
        free_memory()
        logger.warning("out of memory with %d texts in a pass: going on with at most %d at a time, the others "
                       "waiting with their state", len(slots), keep)
        self.limit = keep
        return slots[:keep]


def _share(slots: list[TextSlot], since: float) -> float:
    """Split the wall time since `since` evenly among `slots` (the texts of one pass); returns now."""
    now = time.perf_counter()
    for s in slots:
        s.shared_seconds += (now - since) / len(slots)
    return now


def _step_info(slots: list[TextSlot], judged: list[Judged], results: list[Optimised | None], done: int,
               waiting: int) -> StepInfo:
    """A pass's standing, per text and overall, once it is settled which texts are done."""
    curve = [TextStep(s.job.key, s.job.k, s.steps, j.loss, j.accuracy, j.margin, r is not None, s.restarts)
             for s, j, r in zip(slots, judged, results)]
    going = sum(r is None for r in results)
    return StepInfo(len(slots), done, done + waiting + going, sum(j.loss for j in judged) / len(judged),
                    sum(j.accuracy for j in judged) / len(judged), curve)


def _fits(slots: list[TextSlot], job: Job, prompt: int, budget: int) -> bool:
    """Whether `job` joins the batch within the token budget (padded: slots x longest); a lone job always does."""
    if not slots:
        return True
    # a text's input: the prompt, its K vectors and its targets but the last (EOS is only predicted)
    longest = max(max(len(s.targets) + s.job.k for s in slots), len(job.targets) + job.k) + prompt - 1
    return (len(slots) + 1) * longest <= budget


def _verdicts(lm: FrozenLM, layout: Layout, inputs: list[torch.Tensor], targets: list[list[int]]) -> list[bool]:
    """`verify`, in halves after running out of memory (each result's verdict is its own, batched
    or alone: `memtok.decode.greedy`); a lone result that does not fit is refused with one line."""
    verdicts = None
    try:
        verdicts = verify(lm, layout, inputs, targets)
    except torch.OutOfMemoryError:
        pass
    if verdicts is not None:
        return verdicts
    if len(inputs) == 1:
        raise DoesNotFitError(len(targets[0]), len(inputs[0]), lm.device)
    free_memory()
    half = len(inputs) // 2
    return (_verdicts(lm, layout, inputs[:half], targets[:half])
            + _verdicts(lm, layout, inputs[half:], targets[half:]))
