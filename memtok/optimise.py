"""Optimise memory vectors for many texts at once, and verify each result by greedy decoding.

A padded batch of `batch_size` slots (`memtok.slot.TextSlot`), each holding one text with its own
vectors and optimiser. Every step is one forward and backward pass of the frozen model over the
whole batch (`memtok.forward`); a text leaves its slot the moment it is done (or given up), and the
next text in the queue takes the slot at the next step, so one hard text never holds the others
back. `optimise_verified` then judges each result by greedy decoding, a batch of results at a time.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .errors import MemtokError
from .forward import padded_pass, vocab_distance
from .greedy import verify
from .jobs import Job, Optimised, StepInfo, TextStep
from .layout import Layout
from .model import FrozenLM
from .precision import model_inputs
from .recompute import layers_recomputed
from .resolved import Resolved
from .slot import Judged, TextSlot
from .vector_optimizer import VectorOptimizer

logger = logging.getLogger(__name__)
# a result that took this long to optimise is verified at once, with any waiting, rather than held for a
# full batch: greedy decoding costs seconds, and a run killed in between would lose the minutes
VERIFY_AT_ONCE_SECONDS = 60.0


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


def optimise(lm: FrozenLM, resolved: Resolved, jobs: Iterable[Job],
             on_step: Callable[[StepInfo], None] | None = None, checkpoint: Checkpoint | None = None
             ) -> Iterator[Optimised]:
    """Yield an `Optimised` for each job, in the order they finish.

    `jobs` is consumed as slots free up (at most `batch_size` texts and `max_batch_tokens` padded
    positions in a pass); when it is a deque, jobs the caller appends while iterating (a retry with
    more vectors, say) join the same batch. Jobs may differ in K. With a storage dtype below float32
    every forward pass sees the vectors rounded to it, so the exactness judged here is that of the
    memory as saved. With a `checkpoint`, a text saved there goes on from where it stopped, and the
    texts in flight are saved there when the loop is stopped (an exception, or the generator closed
    before its end). A pass that runs out of memory halves the batch (`_back_off`). Layers are
    recomputed in the backward pass where the driver (`optimise_verified`) asks.
    """
    queue, slots = jobs if isinstance(jobs, deque) else deque(jobs), []
    parked: deque[TextSlot] = deque()  # texts set aside, with their state, after running out of memory
    limit, done = resolved.batch_size, 0
    try:
        while queue or slots or parked:
            # 1. refill free slots: texts set aside first, then the queue, within the batch's size and token budget
            limit = _refill(lm, resolved, slots, parked, queue, limit, checkpoint)
            # 2. forward, and judge each text on these logits, i.e. on the vectors that produced them
            began, judged = time.perf_counter(), None
            try:
                judged, per_text = batch_pass(lm, slots)
            except torch.OutOfMemoryError:
                pass  # backed off below, once the exception no longer holds the pass's tensors
            if judged is None:
                slots, limit = _back_off(slots, parked)
                continue
            began = _share(slots, began)

            # 3. the texts that are done leave their slots
            results = [s.settle(j) for s, j in zip(slots, judged)]
            still = [s for s, r in zip(slots, results) if r is None]
            finished = [r for r in results if r is not None]
            done += len(finished)
            if on_step is not None:
                on_step(_step_info(slots, judged, results, done, len(queue) + len(parked)))

            # 4. backward and update the texts still in play; each text's loss only reaches its own vectors
            slots, limit = _learn(still, per_text, parked, began, limit)
            # a pass with no backward keeps its graph (activations) alive through the next forward otherwise
            del per_text
            yield from finished
    except BaseException:  # stopped: Ctrl-C, SIGTERM, an error, or closed by the caller
        if checkpoint is not None:
            checkpoint.save({s.key(): s.snapshot() for s in [*slots, *parked]})
        raise


def _learn(still: list[TextSlot], per_text: torch.Tensor, parked: deque[TextSlot], began: float,
           limit: int) -> tuple[list[TextSlot], int]:
    """The backward pass and one update of the texts still in play; the texts and batch limit the
    next pass has. Out of memory in the backward pass, no update is made and the pass is not counted:
    the texts go on from where they were, half of them waiting (`_back_off`)."""
    if not still:
        return still, limit
    backed = False
    try:
        per_text.sum().backward()
        backed = True
    except torch.OutOfMemoryError:
        pass  # backed off below, once the exception no longer holds the pass's tensors
    if not backed:
        for s in still:
            s.unsettle()
        return _back_off(still, parked)
    update(still)
    _share(still, began)
    return still, limit


def _share(slots: list[TextSlot], since: float) -> float:
    """Split the wall time since `since` evenly among `slots` (the texts of one pass); returns now."""
    now = time.perf_counter()
    for s in slots:
        s.shared_seconds += (now - since) / len(slots)
    return now


def _step_info(slots: list[TextSlot], judged: list[Judged], results: list[Optimised | None], done: int,
               waiting: int) -> StepInfo:
    """A pass's standing, per text and overall, once it is settled which texts are done."""
    curve = [TextStep(s.job.key, s.job.k, s.steps, j.loss, j.accuracy, j.margin, r is not None, s.attempts)
             for s, j, r in zip(slots, judged, results)]
    going = sum(r is None for r in results)
    return StepInfo(len(slots), done, done + waiting + going, sum(j.loss for j in judged) / len(judged),
                    sum(j.accuracy for j in judged) / len(judged), curve)


def update(slots: list[TextSlot]) -> None:
    """One optimiser step for each of these texts (`VectorOptimizer.update_all`: a few kernels for
    all, each text with its own moments and step), then a new attempt for any that asks for one. A
    text whose loss was not a number makes no step: that attempt is dropped, its best kept."""
    going = []
    for s in slots:
        if not s.finite:
            s.drop_grads()
            s.new_attempt()
            continue
        if s.recipe.clip:  # one norm over this text's parameters, as torch.nn.utils.clip_grad_norm_
            torch.nn.utils.clip_grad_norm_(s.learned.params, s.recipe.clip)
        going.append(s)
    params = [p for s in going for p in s.learned.params]
    VectorOptimizer.update_all([opt for s in going for opt in s.opts], params, [p.grad for p in params])
    for s in going:
        s.drop_grads()
        if s.wants_new_attempt():
            s.new_attempt()


def _fits(slots: list[TextSlot], job: Job, prompt: int, budget: int) -> bool:
    """Whether `job` joins the batch within the token budget (padded: slots x longest); a lone job always does."""
    if not slots:
        return True
    # a text's input: the prompt, its K vectors and its targets but the last (EOS is only predicted)
    longest = max(max(len(s.targets) + s.job.k for s in slots), len(job.targets) + job.k) + prompt - 1
    return (len(slots) + 1) * longest <= budget


def _refill(lm: FrozenLM, resolved: Resolved, slots: list[TextSlot], parked: deque[TextSlot], queue: deque[Job],
            limit: int, checkpoint: Checkpoint | None) -> int:
    """Fill free slots: texts set aside first, then jobs from the queue (each taking up a saved state
    of its text, if the checkpoint has one), within `limit` texts and the token budget. Returns the
    limit, lowered to the texts in play when a new one runs out of memory as it is made (its job
    waits at the head of the queue)."""
    prompt = len(resolved.layout.prefix_ids) + len(resolved.layout.infix_ids)
    while parked and len(slots) < limit:
        slots.append(parked.popleft())
    while queue and len(slots) < limit and _fits(slots, queue[0], prompt, resolved.max_batch_tokens):
        slot = None
        try:
            slot = TextSlot(lm, queue[0], resolved, checkpoint)
        except torch.OutOfMemoryError:
            pass
        if slot is None:
            if not slots:
                raise MemtokError(_too_big(lm, queue[0].targets, queue[0].k))
            logger.warning("out of memory making a text's vectors beside %d others: going on with at most %d at "
                           "a time", len(slots), len(slots))
            _free()
            return len(slots)
        slots.append(slot)
        queue.popleft()
    return limit


def _too_big(lm: FrozenLM, targets: list[int], k: int) -> str:
    return (f"one text of {len(targets)} tokens with {k} vector(s) does not fit in the memory of {lm.device}: "
            "lower --max-batch-tokens or --segment-tokens, add --recompute-layers, or load the model in fewer bits "
            "(--model-dtype)")


def _free() -> None:
    """Give the memory of a failed pass back to the device (its tensors are gone with its exception)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _back_off(slots: list[TextSlot], parked: deque[TextSlot]) -> tuple[list[TextSlot], int]:
    """After running out of memory in a pass: half the texts go on, the others wait (their vectors,
    moments and steps kept) and take the next free slots; the batch stays at that size from then on.
    A lone text that does not fit is refused with one line that says what would make it fit."""
    if len(slots) <= 1:
        raise MemtokError(_too_big(slots[0].lm, slots[0].job.targets, slots[0].job.k))
    keep = len(slots) // 2
    for s in slots:
        s.drop_grads()
    parked.extendleft(reversed(slots[keep:]))
    _free()
    logger.warning("out of memory with %d texts in a pass: going on with at most %d at a time, the others "
                   "waiting with their state", len(slots), keep)
    return slots[:keep], keep


def optimise_verified(lm: FrozenLM, resolved: Resolved, jobs: deque[Job],
                      on_step: Callable[[StepInfo], None] | None = None, checkpoint: str | Path | None = None
                      ) -> Iterator[tuple[Optimised, bool]]:
    """`optimise`, each result with its verdict (greedy decoding gives exactly its targets), verified
    `batch_size` results at a time, or at once after a long optimisation.

    Jobs the caller appends to `jobs` while iterating (a retry with more vectors) are run too, even
    when they come from the last verdicts, after the optimiser had run dry. `checkpoint`: a file
    (`memtok.checkpoint`) that texts saved at an earlier stop go on from; stopped early, the texts in
    flight are saved there (results optimised but not yet verified, each under
    `VERIFY_AT_ONCE_SECONDS`, are done again), and run to its end, it keeps only states never reached.
    """
    saved = None if checkpoint is None else Checkpoint(checkpoint, lm, resolved)
    with layers_recomputed(lm, resolved.recompute_layers):  # undone however this generator ends
        while True:
            # closed however this generator ends, so that the texts in flight reach the checkpoint now
            with closing(optimise(lm, resolved, jobs, on_step, saved)) as results:
                for done in _batches(results, resolved.batch_size):
                    yield from _judged(lm, resolved, done)
            if not jobs:
                break
    if saved is not None:
        saved.finish()


def _verdicts(lm: FrozenLM, layout: Layout, inputs: list[torch.Tensor], targets: list[list[int]]) -> list[bool]:
    """`verify`, in halves after running out of memory (each result's verdict is its own, batched
    or alone: `memtok.greedy`); a lone result that does not fit is refused with one line."""
    verdicts = None
    try:
        verdicts = verify(lm, layout, inputs, targets)
    except torch.OutOfMemoryError:
        pass
    if verdicts is not None:
        return verdicts
    if len(inputs) == 1:
        raise MemtokError(_too_big(lm, targets[0], len(inputs[0])))
    _free()
    half = len(inputs) // 2
    return (_verdicts(lm, layout, inputs[:half], targets[:half])
            + _verdicts(lm, layout, inputs[half:], targets[half:]))


def _batches(results: Iterator[Optimised], size: int) -> Iterator[list[Optimised]]:
    """The results in groups of `size`, a group at once after a long optimisation, and the rest when
    the results run out."""
    pending: list[Optimised] = []
    for result in results:
        pending.append(result)
        if len(pending) >= size or result.seconds >= VERIFY_AT_ONCE_SECONDS:
            yield pending
            pending = []
    if pending:
        yield pending


def _judged(lm: FrozenLM, resolved: Resolved, done: list[Optimised]) -> Iterator[tuple[Optimised, bool]]:
    """Each result with whether greedy decoding from its vectors, as stored, gives its targets."""
    began = time.perf_counter()
    verdicts = _verdicts(lm, resolved.layout, [model_inputs(e.vectors, resolved.storage, resolved.frame) for e in done],
                         [e.targets for e in done])
    share = (time.perf_counter() - began) / len(done)
    for e in done:  # the verification's time is shared among its results, as a pass's is
        e.seconds += share
    return zip(done, verdicts)
