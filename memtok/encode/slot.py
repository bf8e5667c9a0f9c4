"""One text's place in the optimiser's batch: its targets, its learned vectors and their optimiser,
its best so far, and when it restarts.

The batch (`memtok.encode.batch`) only moves slots in and out of the batch; everything one text's
optimisation remembers between passes lives here, and a checkpoint saves and restores it whole.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch

from ..model.model import FrozenLM, on_device
from ..model.precision import stored_form, straight_through
from .checkpoint import Checkpoint, SlotState, text_key
from .jobs import Job, Optimised
from .resolved import Resolved
from .vector_optimizer import VectorOptimizer


class Judged(NamedTuple):
    """One text's standing on one forward pass, over the targets in play."""

    accuracy: float  # right / all the text's targets
    margin: float
    loss: float
    right: int


class Best(NamedTuple):
    """The most accurate vectors a text has had, kept for when it gives up."""

    judged: Judged
    vectors: torch.Tensor


class TextSlot:
    """One text in the batch, from its job to its `Optimised` result."""

    def __init__(self, lm: FrozenLM, job: Job, resolved: Resolved, checkpoint: Checkpoint | None = None) -> None:
        """`checkpoint`: where a state of this same text saved at an earlier stop is taken up, if any."""
        recipe = resolved.recipe
        self.job, self.recipe = job, recipe
        self.max_steps = job.max_steps or recipe.max_steps
        state = None if checkpoint is None else checkpoint.take(self.key())
        try:
            self._make(lm, job, resolved, state)
        except torch.OutOfMemoryError:  # the text waits for a free slot: its next try takes the state up
            if state is not None:
                checkpoint.give_back(self.key(), state)
            raise

    def _make(self, lm: FrozenLM, job: Job, resolved: Resolved, state: SlotState | None) -> None:
        recipe = self.recipe
        # semantic memories: the segment's code fixed in its subspace, the optimiser moving in the rest
        self.space = resolved.semantic
        self.code = None if self.space is None else self.space.codes(lm, [job.targets[:-1]])[0]
        self.storage, self.frame = resolved.storage, resolved.frame
        self.lm, self.restarts = lm, 0 if state is None else state.restarts  # restarts after a stall
        self.start, self.make_vectors = resolved.start, resolved.make_vectors
        self.learned = self.make_vectors(lm, recipe, self.start, job.k, job.targets[:-1], self.restarts, self.code)
        layout = resolved.layout.with_k(job.k)
        self.layout, self.targets = layout, on_device(job.targets, lm.device)  # [n]
        self.opts = [VectorOptimizer(recipe) for _ in self.learned.params]
        # targets in play: all, or a prefix that grows by `grow_tokens` each time it is solved
        self.span = min(recipe.grow_tokens or len(job.targets), len(job.targets))
        self.steps_before = 0  # steps spent before the latest restart
        self.began = time.perf_counter()
        self.shared_seconds = 0.0  # this text's share of each pass it was in
        self.best: Best | None = None
        self.since_best = 0
        self.restart_best, self.stalled = -1.0, 0  # this restart's best accuracy, and the steps since it
        self.finite = True  # whether the latest pass's loss was a number
        self._weights: torch.Tensor | None = None
        if state is not None:  # go on from where this text stopped
            with torch.no_grad():
                for p, saved in zip(self.learned.params, state.params, strict=True):
                    p.copy_(saved)
            for opt, moments in zip(self.opts, state.moments, strict=True):
                opt.restore(state.step - state.steps_before, moments)
            for name in SlotState.counters():
                setattr(self, name, getattr(state, name))
            self.began = time.perf_counter() - state.seconds
            if state.best is not None:
                self.best = Best(Judged(*state.best), state.best_vectors)

    @property
    def first_target(self) -> int:
        """The input position whose logits predict targets[0]."""
        return self.layout.first_target

    @property
    def steps(self) -> int:
        return self.steps_before + self.opts[0].step

    def position_weights(self) -> torch.Tensor:
        """[n] loss weights of this text's targets: the first two and the last one (EOS) may weigh
        more, as progressive cramming weighs its first tokens. Made once per text."""
        if self._weights is None:
            self._weights = torch.ones(len(self.targets), device=self.targets.device)
            self._weights[:2] = self.recipe.first_weight
            self._weights[-1] = self.recipe.eos_weight
        return self._weights

    def vectors(self) -> torch.Tensor:
        """The text's vectors as learned, with its code in place for a semantic memory."""
        v = self.learned.vectors()
        return v if self.space is None else self.space.place(v, self.code)

    def input_vectors(self) -> torch.Tensor:
        """What the forward pass sees: the vectors as they will be saved, with a gradient to the parameters."""
        return straight_through(self.vectors(), self.storage, self.frame)

    def inputs(self, vectors: torch.Tensor) -> torch.Tensor:
        """The whole input of this text's next pass around its input `vectors`: the prompt, the
        vectors, and the targets in play but the last (it is only predicted)."""
        return self.layout.inputs(self.lm, vectors, self.targets[:self.span - 1])

    def stored(self) -> torch.Tensor:
        """The vectors as they would be saved (for a framed dtype, its levels times scales): what this
        step's forward pass saw."""
        return stored_form(self.vectors(), self.storage, self.frame).clone()

    def settle(self, judged: Judged) -> Optimised | None:
        """Take in this pass's standing: the result if the text is done (exact with the recipe's
        margin, or out of steps or patience), else None; a growing target solved short of the
        text's end takes more targets instead."""
        r = self.recipe
        self._unsettled = (self.span, self.best, self.since_best, self.restart_best, self.stalled, self.finite)
        solved = judged.right == self.span and judged.margin > 0 and judged.margin >= r.min_margin
        converged = solved and self.span == len(self.targets)
        if solved and not converged:  # go on from the vectors that solved the shorter span
            self.span = min(self.span + r.grow_tokens, len(self.targets))
        self._keep_if_best(judged)
        gave_up = self.steps >= self.max_steps or (r.patience is not None and self.since_best >= r.patience)
        return self._result(converged, judged) if converged or gave_up else None

    def unsettle(self) -> None:
        """Take back the latest `settle`: its pass made no update (it ran out of memory in the
        backward pass), so the same vectors are judged again and counted once."""
        self.span, self.best, self.since_best, self.restart_best, self.stalled, self.finite = self._unsettled

    def _keep_if_best(self, judged: Judged) -> None:
        self.finite = math.isfinite(judged.loss)
        if self.best is None or judged.accuracy > self.best.judged.accuracy:
            self.best, self.since_best = Best(judged, self.stored()), 0
        else:
            self.since_best += 1
        if judged.accuracy > self.restart_best:
            self.restart_best, self.stalled = judged.accuracy, 0
        else:
            self.stalled += 1

    def wants_restart(self) -> bool:
        """Its loss was not a number (a float16 overflow would put NaN into its vectors and moments
        for good), or it has stalled for the recipe's `restart_after` steps."""
        after = self.recipe.restart_after
        return not self.finite or (after is not None and self.stalled >= after)

    def restart(self) -> None:
        """Begin again from the recipe's `restart_init` with a new factorisation and a fresh optimiser:
        a run stuck with a token or two wrong can take hundreds of steps to get out, where a restart
        is often exact in a few dozen. The best vectors so far are kept."""
        self.steps_before, self.restarts = self.steps, self.restarts + 1
        self.learned = self.make_vectors(self.lm, self.recipe, self.start, self.job.k, self.job.targets[:-1],
                                         self.restarts, self.code)
        self.opts = [VectorOptimizer(self.recipe) for _ in self.learned.params]
        self.restart_best, self.stalled = -1.0, 0

    def drop_grads(self) -> None:
        for p in self.learned.params:
            p.grad = None

    def key(self) -> str:
        return text_key(self.job.targets, self.job.k, self.max_steps)

    def snapshot(self) -> SlotState:
        """Where this text stands, for a checkpoint."""
        best = self.best
        return SlotState(params=[p.detach() for p in self.learned.params], moments=[o.moments() for o in self.opts],
                         step=self.steps, seconds=time.perf_counter() - self.began,
                         best=list(best.judged) if best else None, best_vectors=best.vectors if best else None,
                         **{name: getattr(self, name) for name in SlotState.counters()})

    def _result(self, converged: bool, judged: Judged) -> Optimised:
        """The converged vectors, or for a text that gave up the most accurate it had."""
        if not converged and self.best is not None and self.best.judged.accuracy > judged.accuracy:
            judged, vectors = self.best
        else:
            vectors = self.stored()
        return Optimised(key=self.job.key, vectors=vectors.float().cpu(), steps=self.steps,
                         seconds=self.shared_seconds, elapsed_seconds=time.perf_counter() - self.began,
                         loss=judged.loss, min_margin=judged.margin, token_accuracy=judged.accuracy,
                         converged=converged, targets=self.job.targets, restarts=self.restarts)
