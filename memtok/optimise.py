"""Optimise memory vectors for many texts at once, and verify each result by greedy decoding.

A padded batch of `batch_size` slots, each holding one text with its own vectors and optimiser.
Every step is one forward and backward pass of the frozen model over the whole batch; a text
leaves its slot the moment it is done (or given up), and the next text in the queue takes the
slot at the next step, so one hard text never holds the others back. `optimise_verified` then
judges each result by greedy decoding, a batch of results at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch.nn.utils.rnn import pad_sequence

from .checkpoint import Checkpoint, SlotState, text_key
from .greedy import verify
from .model import FrozenLM
from .precision import framed, model_inputs, stored_form, straight_through
from .recipes import Init, Recipe
from .recompute import layers_recomputed
from .resolved import Resolved
from .start import LearnedStart
from .vector_optimizer import VectorOptimizer, update_many

logger = logging.getLogger(__name__)
HEAD_CHUNK = 256  # target positions whose logits [chunk, vocab] exist at once
# a result that took this long to optimise is verified at once, with any waiting, rather than held for a
# full batch: greedy decoding costs seconds, and a run killed in between would lose the minutes
VERIFY_AT_ONCE_SECONDS = 60.0


@dataclass
class Job:
    """One optimisation to run: the ids the vectors must make the model produce, and how many vectors."""

    key: object  # the caller's handle, given back in `Optimised.key`
    targets: list[int]  # what greedy decoding must give: a text's ids and EOS (capacity runs may omit EOS)
    k: int
    max_steps: int | None = None  # None: the recipe's


@dataclass
class Optimised:
    """One job's outcome, before greedy verification."""

    key: object
    vectors: torch.Tensor  # [K, d], float32 stored values (`memtok.precision.stored_form`), on the CPU
    steps: int
    seconds: float  # its share of the wall time of the passes it was in: texts' seconds add up to a run's
    elapsed_seconds: float  # from its first pass to its last, whatever else shared those passes
    loss: float  # mean cross-entropy per target in play (EOS included) of `vectors`
    min_margin: float  # smallest (target logit - best other logit) over the targets in play
    token_accuracy: float  # teacher-forced share of targets (EOS included) whose argmax is right; with a
    # growing target (`Recipe.grow_tokens`), targets not yet in play count as wrong
    converged: bool  # every argmax right with at least the recipe's margin
    targets: list[int]  # the job's, which greedy decoding must give
    restarts: int = 0  # new starts after a stall (`Recipe.restart_after`)
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
    step: int  # updates before this pass: 0 is the start itself
    loss: float
    accuracy: float
    margin: float
    done: bool  # its last pass: exact with the recipe's margin, or out of steps or patience
    restarts: int = 0  # new starts so far (`Recipe.restart_after`): the first pass of each sees its start


@dataclass
class StepInfo:
    """What a progress display and a step log need after each step."""

    active: int  # texts in this step's forward pass
    done: int
    total: int
    loss: float
    accuracy: float
    texts: list[TextStep]


class _Judged(NamedTuple):
    """One text's standing on one forward pass, over the targets in play."""

    accuracy: float  # right / all the text's targets
    margin: float
    loss: float
    right: int


class _Best(NamedTuple):
    """The most accurate vectors a text has had, kept for when it gives up."""

    judged: _Judged
    vectors: torch.Tensor


# --- what each text learns -----------------------------------------------------------------------

def initial_vectors(lm: FrozenLM, recipe: Recipe, start: LearnedStart | None, k: int,
                    text_ids: list[int]) -> torch.Tensor:
    """The recipe's starting point for one text's [K, d] vectors; the same whatever the batch.
    `Init.LEARNED` reads `start`, and starts from the mean without one."""
    weight = lm.model.get_input_embeddings().weight
    if recipe.init is Init.TEXT:
        vec = lm.embed(torch.tensor(text_ids, device=lm.device)).mean(0)
        return vec.expand(k, -1).clone()
    if recipe.init is Init.LEARNED and start is not None:
        with torch.no_grad():
            return start.vectors(lm, [text_ids], k)[0].clone()
    if recipe.init in (Init.MEAN, Init.LEARNED):
        return lm.embedding_mean.expand(k, -1).clone()
    gen = torch.Generator().manual_seed(recipe.seed)
    noise = torch.randn(k, weight.shape[1], generator=gen)
    return (noise * lm.embedding_std).to(lm.device, weight.dtype)


class FullVectors:
    """The vectors themselves are the parameters."""

    def __init__(self, start: torch.Tensor) -> None:
        self.v = start.clone().requires_grad_(True)
        self.params = [self.v]

    def vectors(self) -> torch.Tensor:
        return self.v


class LowRankVectors:
    """`start + z @ W.T`, with z [K, rank] and W [d, rank] both learned (W's columns at `scale` /
    sqrt(rank), z at 1): a per-text low-dimensional projection, which finds exact vectors in far
    fewer steps than learning them directly."""

    def __init__(self, start: torch.Tensor, rank: int, seed: int, scale: float, z_scale: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(start.shape[1], rank, generator=gen) * (scale / rank ** 0.5)
        z = torch.randn(start.shape[0], rank, generator=gen) * z_scale
        self.start = start
        self.z, self.w = z.to(start).requires_grad_(True), w.to(start).requires_grad_(True)
        self.params = [self.z, self.w]

    def vectors(self) -> torch.Tensor:
        return self.start + self.z @ self.w.T


def learned(start: torch.Tensor, recipe: Recipe, scale: float, restarts: int = 0) -> FullVectors | LowRankVectors:
    """The parameters of one text's vectors, in float32 whatever the model's dtype: Adam's small
    steps would vanish in bfloat16's 8 bits of mantissa. Each restart draws a new factorisation."""
    start = start.float()
    if not recipe.rank:
        return FullVectors(start)
    return LowRankVectors(start, recipe.rank, recipe.seed + restarts, scale, recipe.z_scale)


class _Slot:
    """One text in the batch: its targets, its learned vectors, their optimisers and its best so far."""

    def __init__(self, lm: FrozenLM, job: Job, resolved: Resolved) -> None:
        recipe, dtype = resolved.recipe, resolved.config.dtype
        self.job = job
        self.max_steps = job.max_steps or recipe.max_steps
        # input position whose logits predict targets[0]
        self.first_target = resolved.layout.with_k(job.k).first_target
        self.targets = torch.tensor(job.targets, dtype=torch.long, device=lm.device)  # [n]
        # targets in play: all, or a prefix that grows by `grow_tokens` each time it is solved
        self.span = min(recipe.grow_tokens or len(job.targets), len(job.targets))
        with torch.no_grad():
            self.text_emb = lm.embed(self.targets[:-1])  # [n - 1, d]: EOS is only predicted
        self.scale, self.mean = lm.embedding_std, lm.embedding_mean
        self.restarts, self.steps_before = 0, 0  # starts over after a stall, and the steps spent before
        self.learned = learned(initial_vectors(lm, recipe, resolved.start, job.k, job.targets[:-1]), recipe,
                               self.scale)
        # semantic memories: the text's code fixed in its subspace, the optimiser moving in the rest
        self.space = resolved.semantic
        self.code = None if self.space is None else self.space.codes(lm, [job.targets[:-1]])[0]
        self.opts = [VectorOptimizer(recipe) for _ in self.learned.params]
        self.dtype = dtype
        self.frame = lm.frame if framed(dtype) else None
        self.started = time.perf_counter()
        self.shared_seconds = 0.0  # this text's share of each pass it was in
        self.best: _Best | None = None
        self.since_best = 0
        self.start_best, self.stalled = -1.0, 0  # this start's best accuracy, and the steps since it
        self.finite = True  # whether the latest pass's loss was a number
        self._weights: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return self.steps_before + self.opts[0].step

    def position_weights(self, recipe: Recipe) -> torch.Tensor:
        """[n] loss weights of this text's targets: the first two and the last one (EOS) may weigh
        more, as progressive cramming weighs its first tokens. Made once per text."""
        if self._weights is None:
            self._weights = torch.ones(len(self.targets), device=self.targets.device)
            self._weights[:2] = recipe.first_weight
            self._weights[-1] = recipe.eos_weight
        return self._weights

    def vectors(self) -> torch.Tensor:
        """The text's vectors as learned, with its code in place for a semantic memory."""
        v = self.learned.vectors()
        return v if self.space is None else self.space.pin(v, self.code)

    def input_vectors(self) -> torch.Tensor:
        """What the forward pass sees: the vectors as they will be saved, with a gradient to the parameters."""
        return straight_through(self.vectors(), self.dtype, self.frame)

    def stored(self) -> torch.Tensor:
        """The vectors as they would be saved (for a framed dtype, its levels times scales): what this
        step's forward pass saw."""
        return stored_form(self.vectors(), self.dtype, self.frame).clone()

    def solved(self, judged: _Judged, min_margin: float) -> bool:
        """Whether every target in play is right with at least `min_margin`."""
        return judged.right == self.span and judged.margin > 0 and judged.margin >= min_margin

    def grow(self, tokens: int) -> None:
        """Put `tokens` more targets in play, starting from the vectors that solved the shorter span."""
        self.span = min(self.span + tokens, len(self.targets))

    def keep_if_best(self, judged: _Judged) -> None:
        self.finite = math.isfinite(judged.loss)
        if self.best is None or judged.accuracy > self.best.judged.accuracy:
            self.best, self.since_best = _Best(judged, self.stored()), 0
        else:
            self.since_best += 1
        if judged.accuracy > self.start_best:
            self.start_best, self.stalled = judged.accuracy, 0
        else:
            self.stalled += 1

    def restart(self, recipe: Recipe, restarts: int) -> None:
        """Start again from the mean embedding with the `restarts`-th new factorisation and a fresh
        optimiser: a run stuck with a token or two wrong can take hundreds of steps to get out, where
        a new start is often exact in a few dozen. The best vectors so far are kept."""
        self.steps_before, self.restarts = self.steps, restarts
        self.learned = learned(self.mean.expand(self.job.k, -1), recipe, self.scale, restarts)
        self.opts = [VectorOptimizer(recipe) for _ in self.learned.params]
        self.start_best, self.stalled = -1.0, 0

    def key(self) -> str:
        return text_key(self.job.targets, self.job.k, self.max_steps)

    def snapshot(self) -> SlotState:
        """Where this text stands, for a checkpoint."""
        best = self.best
        return SlotState([p.detach() for p in self.learned.params], [opt.moments() for opt in self.opts],
                         self.steps, self.span, self.since_best, time.perf_counter() - self.started,
                         list(best.judged) if best else None, best.vectors if best else None, self.shared_seconds,
                         self.restarts, self.steps_before, self.start_best, self.stalled)

    def take_up(self, state: SlotState, recipe: Recipe) -> None:
        """Go on from a checkpoint's `state` of this same text."""
        if state.restarts:
            self.restart(recipe, state.restarts)
        with torch.no_grad():
            for p, saved in zip(self.learned.params, state.params, strict=True):
                p.copy_(saved)
        self.steps_before, self.start_best, self.stalled = state.steps_before, state.start_best, state.stalled
        for opt, moments in zip(self.opts, state.moments, strict=True):
            opt.restore(state.step - state.steps_before, moments)
        self.span, self.since_best = state.span, state.since_best
        self.started = time.perf_counter() - state.seconds
        self.shared_seconds = state.shared_seconds
        if state.best is not None:
            self.best = _Best(_Judged(*state.best), state.best_vectors)

    def result(self, converged: bool, judged: _Judged) -> Optimised:
        """The converged vectors, or for a text that gave up the most accurate it had."""
        if not converged and self.best is not None and self.best.judged.accuracy > judged.accuracy:
            judged, vectors = self.best
        else:
            vectors = self.stored()
        return Optimised(self.job.key, vectors.float().cpu(), self.steps, self.shared_seconds,
                         time.perf_counter() - self.started, judged.loss, judged.margin, judged.accuracy, converged,
                         self.job.targets, self.restarts)


# --- one forward pass ----------------------------------------------------------------------------

def vocab_distance(lm: FrozenLM, vectors: torch.Tensor) -> torch.Tensor:
    """Mean over `vectors` [K, d] of the squared distance to the nearest token's input vector,
    relative to that vector's squared norm; a gradient reaches the vectors (the nearest row is chosen
    without one)."""
    rows = lm.vocabulary
    v = vectors.float()
    with torch.no_grad():
        nearest = ((v * v).sum(1, keepdim=True) + (rows * rows).sum(1)[None] - 2 * v @ rows.T).argmin(1)
    target = rows[nearest]
    return (((v - target) ** 2).sum(1) / (target * target).sum(1).clamp_min(1e-12)).mean()


def _judge(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor,
           t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: cross-entropy, argmax right, margin (target logit - best other logit), on the
    device of `h`. A model spread over GPUs (`--device auto`) may keep its head on another GPU than
    its last layer: the logits come back there, and the targets go to them."""
    logits = head(h).float()
    t = t.to(logits.device)
    ce = F.cross_entropy(logits, t, reduction="none")
    with torch.no_grad():
        values, indices = logits.topk(2, dim=-1)
        best, runner_up = values.unbind(-1)
        right = indices.select(-1, 0) == t
        margin = logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - torch.where(right, runner_up, best)
    return ce.to(h.device), right.to(h.device), margin.to(h.device)


def score_positions(lm: FrozenLM, x: torch.Tensor, mask: torch.Tensor, first: int, where: torch.Tensor,
                    targets: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_judge` at each target position of the batch `x`: `where` [2, n] holds each target's row and
    its input position counted from `first`, `targets` [n] the ids, row by row. The logits are made
    `HEAD_CHUNK` positions at a time and remade during the backward pass (checkpointing), so memory
    holds one chunk of [positions, vocabulary], not all."""
    dev = x.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        if lm.split_head is not None:
            decoder, head = lm.split_head
            states = decoder(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state[:, first:]
        else:
            head = torch.nn.Identity()
            states = lm.model(inputs_embeds=x, attention_mask=mask, use_cache=False).logits[:, first:]
        states, t = states[where[0], where[1]], targets
        if len(t) <= HEAD_CHUNK:  # one chunk: nothing to save by remaking its logits
            return _judge(head, states, t)
        parts = [torch.utils.checkpoint.checkpoint(_judge, head, states[c:c + HEAD_CHUNK], t[c:c + HEAD_CHUNK],
                                                   use_reentrant=False)
                 for c in range(0, len(t), HEAD_CHUNK)]
    return tuple(torch.cat(col) for col in zip(*parts))


def _fits(slots: list[_Slot], job: Job, prompt: int, budget: int) -> bool:
    """Whether `job` joins the batch within the token budget (padded: slots x longest); a lone job always does."""
    if not slots:
        return True
    # a text's input: the prompt, its K vectors and its targets but the last (EOS is only predicted)
    longest = max(max(len(s.targets) + s.job.k for s in slots), len(job.targets) + job.k) + prompt - 1
    return (len(slots) + 1) * longest <= budget


def padded_pass(lm: FrozenLM, seqs: list[torch.Tensor], targets: list[torch.Tensor], first: list[int],
                bf16: bool = False) -> tuple[torch.Tensor, ...]:
    """One right-padded forward pass over the input sequences `seqs` [L_j, d], row j's `targets[j]`
    predicted from its input position `first[j]` on (right padding keeps every row's positions and
    attention as when alone). Returns `score_positions`' (cross-entropy, right, margin) at every
    target position, row by row, with the row of each position and each row's count of targets:
    the pass an encode's batch and the learned start's training both make. Where the targets sit
    is known here, on the host, so nothing is read back from the device to find them."""
    dev = lm.device
    lengths = torch.tensor([len(x) for x in seqs], device=dev)
    x = pad_sequence(seqs, batch_first=True)
    mask = (torch.arange(x.shape[1], device=dev)[None] < lengths[:, None]).long()
    lo = min(first)
    rows = [j for j, t in enumerate(targets) for _ in range(len(t))]
    columns = [f - lo + i for t, f in zip(targets, first) for i in range(len(t))]
    where = torch.tensor([rows, columns], device=dev)
    ce, right, margin = score_positions(lm, x, mask, lo, where, torch.cat(targets), bf16)
    return ce, right, margin, where[0], torch.tensor([len(t) for t in targets], device=dev)


def _forward(lm: FrozenLM, slots: list[_Slot], prefix: torch.Tensor, infix: torch.Tensor,
             recipe: Recipe) -> tuple[list[_Judged], torch.Tensor]:
    """Each text's standing on one padded forward pass, and the per-text losses to back-propagate."""
    vectors = [s.input_vectors() for s in slots]
    seqs = [torch.cat([prefix, v.to(prefix.dtype), infix, s.text_emb[:s.span - 1]]) for v, s in zip(vectors, slots)]
    ce, right, margin, rows, n = padded_pass(lm, seqs, [s.targets[:s.span] for s in slots],
                                             [s.first_target for s in slots], recipe.bf16)
    zeros = torch.zeros(len(slots), device=lm.device)
    right_count = zeros.index_add(0, rows, right.float())
    min_margin = torch.full_like(zeros, torch.inf).scatter_reduce(0, rows, margin, "amin")
    weight = 1.0 + recipe.wrong_weight * (~right).float()
    if recipe.first_weight != 1.0 or recipe.eos_weight != 1.0:  # the positions are each text's targets, in order
        weight = weight * torch.cat([s.position_weights(recipe)[:s.span] for s in slots])
    per_text = zeros.index_add(0, rows, ce * weight) / n
    if recipe.vocab_weight:
        per_text = per_text + recipe.vocab_weight * torch.stack([vocab_distance(lm, v) for v in vectors])
    # the step's one read from the device: what each text's standing needs
    n_right, margins, losses = torch.stack([right_count, min_margin, per_text.detach()]).tolist()
    judged = [_Judged(r / len(s.targets), m, loss, int(r)) for r, m, loss, s in zip(n_right, margins, losses, slots)]
    return judged, per_text


def _share(slots: list[_Slot], since: float) -> float:
    """Split the wall time since `since` evenly among `slots` (the texts of one pass); returns now."""
    now = time.perf_counter()
    for s in slots:
        s.shared_seconds += (now - since) / len(slots)
    return now


def _step_info(slots: list[_Slot], judged: list[_Judged], still: list[_Slot], done: int, waiting: int) -> StepInfo:
    """A pass's standing, per text and overall, once it is settled which texts are done."""
    going = {id(s) for s in still}
    curve = [TextStep(s.job.key, s.job.k, s.steps, j.loss, j.accuracy, j.margin, id(s) not in going,
                      s.restarts)
             for s, j in zip(slots, judged)]
    return StepInfo(len(slots), done, done + waiting + len(still), sum(j.loss for j in judged) / len(judged),
                    sum(j.accuracy for j in judged) / len(judged), curve)


def _settle(slots: list[_Slot], judged: list[_Judged], recipe: Recipe) -> tuple[list[_Slot], list[Optimised]]:
    """The slots still in play, and the results of those done: a text is done when exact with the
    recipe's margin, or out of steps or patience; a growing target solved short of the text's end
    takes more targets instead."""
    still, finished = [], []
    for s, j in zip(slots, judged):
        solved = s.solved(j, recipe.min_margin)
        converged = solved and s.span == len(s.targets)
        if solved and not converged:
            s.grow(recipe.grow_tokens)
        s.keep_if_best(j)
        gave_up = s.steps >= s.max_steps or (recipe.patience is not None and s.since_best >= recipe.patience)
        if converged or gave_up:
            finished.append(s.result(converged, j))
        else:
            still.append(s)
    return still, finished


# --- the loop ------------------------------------------------------------------------------------

def optimise(lm: FrozenLM, resolved: Resolved, jobs: Iterable[Job],
             on_step: Callable[[StepInfo], None] | None = None, checkpoint: Checkpoint | None = None
             ) -> Iterator[Optimised]:
    """Yield an `Optimised` for each job, in the order they finish.

    `jobs` is consumed as slots free up (at most the config's `batch_size` texts and
    `config.max_batch_tokens` padded positions in a pass); when it is a deque, jobs the caller
    appends while iterating (a retry with more vectors, say) join the same batch. Jobs may differ
    in K. With a storage dtype below float32 every forward pass sees the vectors rounded to it, so
    the exactness judged here is that of the memory as saved. With a `checkpoint`, a text saved
    there goes on from where it stopped, and the texts in flight are saved there when the loop is
    stopped (an exception, or the generator closed before its end). A pass that runs out of memory
    halves the batch (`_back_off`).
    """
    with layers_recomputed(lm, resolved.config.recompute_layers):
        yield from _optimise(lm, resolved, jobs, on_step, checkpoint)


def _optimise(lm: FrozenLM, resolved: Resolved, jobs: Iterable[Job], on_step: Callable[[StepInfo], None] | None,
              checkpoint: Checkpoint | None) -> Iterator[Optimised]:
    config, layout, recipe, dev = resolved.config, resolved.layout, resolved.recipe, lm.device
    with torch.no_grad():
        prefix = lm.embed(torch.tensor(layout.prefix_ids, dtype=torch.long, device=dev))
        infix = lm.embed(torch.tensor(layout.infix_ids, dtype=torch.long, device=dev))
    prompt = len(layout.prefix_ids) + len(layout.infix_ids)
    queue, slots = jobs if isinstance(jobs, deque) else deque(jobs), []
    parked: deque[_Slot] = deque()  # texts set aside, with their state, after running out of memory
    limit, done = config.batch_size, 0
    try:
        while queue or slots or parked:
            # 1. refill free slots: texts set aside first, then the queue, within the batch's size and token budget
            _refill(lm, resolved, slots, parked, queue, limit, prompt, checkpoint)
            # 2. forward, and judge each text on these logits, i.e. on the vectors that produced them
            began = time.perf_counter()
            try:
                judged, per_text = _forward(lm, slots, prefix, infix, recipe)
            except torch.OutOfMemoryError as exc:
                slots, limit = _back_off(slots, parked, exc)
                continue
            began = _share(slots, began)

            # 3. the texts that are done leave their slots
            still, finished = _settle(slots, judged, recipe)
            done += len(finished)
            if on_step is not None:
                on_step(_step_info(slots, judged, still, done, len(queue) + len(parked)))

            # 4. backward and update the texts still in play; each text's loss only reaches its own vectors
            if still:
                try:
                    _backward(per_text)
                except torch.OutOfMemoryError as exc:  # no update made: the texts go on from where they were
                    still, limit = _back_off(still, parked, exc)
                else:
                    update(still, recipe)
                    _share(still, began)
            slots = still
            # a pass with no backward keeps its graph (activations) alive through the next forward otherwise
            del per_text
            yield from finished
    except BaseException:  # stopped: Ctrl-C, SIGTERM, an error, or closed by the caller
        if checkpoint is not None:
            checkpoint.save({s.key(): s.snapshot() for s in [*slots, *parked]})
        raise


def update(slots: list[_Slot], recipe: Recipe) -> None:
    """One optimiser step for each of these texts (`vector_optimizer.update_many`: a few kernels for
    all, each text with its own moments and step), then a new start for any that has stalled
    (`Recipe.restart_after`). A loss that is not finite (a float16 model overflows) would put NaN into
    a text's vectors and moments for good: that start is dropped for a new one, its best kept."""
    going = []
    for s in slots:
        if not s.finite:
            for p in s.learned.params:
                p.grad = None
            s.restart(recipe, s.restarts + 1)
            continue
        if recipe.clip:  # one norm over this text's parameters, as torch.nn.utils.clip_grad_norm_
            torch.nn.utils.clip_grad_norm_(s.learned.params, recipe.clip)
        going.append(s)
    params = [p for s in going for p in s.learned.params]
    update_many([opt for s in going for opt in s.opts], params, [p.grad for p in params])
    for s in going:
        for p in s.learned.params:
            p.grad = None
        if recipe.restart_after is not None and s.stalled >= recipe.restart_after:
            s.restart(recipe, s.restarts + 1)


def _refill(lm: FrozenLM, resolved: Resolved, slots: list[_Slot], parked: deque[_Slot], queue: deque[Job],
            limit: int, prompt: int, checkpoint: Checkpoint | None) -> None:
    """Fill free slots: texts set aside first, then jobs from the queue (each taking up a saved state
    of its text, if the checkpoint has one), within `limit` texts and the token budget."""
    while parked and len(slots) < limit:
        slots.append(parked.popleft())
    while queue and len(slots) < limit and _fits(slots, queue[0], prompt, resolved.config.max_batch_tokens):
        slot = _Slot(lm, queue.popleft(), resolved)
        if checkpoint is not None and (state := checkpoint.take(slot.key())) is not None:
            slot.take_up(state, resolved.recipe)
        slots.append(slot)


def _backward(per_text: torch.Tensor) -> None:
    per_text.sum().backward()


def _back_off(slots: list[_Slot], parked: deque[_Slot], exc: BaseException) -> tuple[list[_Slot], int]:
    """After running out of memory in a pass: half the texts go on, the others wait (their vectors,
    moments and steps kept) and take the next free slots; the batch stays at that size from then on.
    A lone text that does not fit is the error itself."""
    if len(slots) <= 1:
        raise exc
    keep = len(slots) // 2
    for s in slots:
        for p in s.learned.params:
            p.grad = None
    parked.extendleft(reversed(slots[keep:]))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    logger.warning("out of memory with %d texts in a pass: going on with at most %d at a time, the others "
                   "waiting with their state", len(slots), keep)
    return slots[:keep], keep


def optimise_verified(lm: FrozenLM, resolved: Resolved, jobs: deque[Job],
                      on_step: Callable[[StepInfo], None] | None = None, checkpoint: Checkpoint | None = None
                      ) -> Iterator[tuple[Optimised, bool]]:
    """`optimise`, each result with its verdict (greedy decoding gives exactly its targets), verified
    the config's `batch_size` results at a time, or at once after a long optimisation.

    Jobs the caller appends to `jobs` while iterating (a retry with more vectors) are run too, even
    when they come from the last verdicts, after the optimiser had run dry. Stopped early, it saves
    the texts in flight to `checkpoint` (results optimised but not yet verified, each under
    `VERIFY_AT_ONCE_SECONDS`, are done again).
    """
    config = resolved.config

    def judged(done: list[Optimised]) -> Iterator[tuple[Optimised, bool]]:
        began = time.perf_counter()
        frame = lm.frame if framed(config.dtype) else None
        inputs = [model_inputs(e.vectors, config.dtype, frame) for e in done]
        verdicts = verify(lm, resolved.layout, inputs, [e.targets for e in done])
        share = (time.perf_counter() - began) / len(done)
        for e in done:  # the verification's time is shared among its results, as a pass's is
            e.seconds += share
        return zip(done, verdicts)

    while True:
        pending: list[Optimised] = []
        # closed however this generator ends, so that the texts in flight reach the checkpoint now
        with closing(optimise(lm, resolved, jobs, on_step, checkpoint)) as results:
            for result in results:
                pending.append(result)
                if len(pending) >= config.batch_size or result.seconds >= VERIFY_AT_ONCE_SECONDS:
                    done, pending = pending, []
                    yield from judged(done)
        if pending:
            yield from judged(pending)
        if not jobs:
            return
