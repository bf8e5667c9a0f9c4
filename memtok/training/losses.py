"""What a start is trained and judged on: the text's loss from its guess, or after an encode's first steps.

A start exists to save the optimiser steps that follow it, so the loss that counts is the one the
encode reaches a few steps on. `after_steps` runs those steps exactly as the encode would (the
recipe's parameters around the guess, `memtok.encode.learned_vectors.around`, and its optimiser,
`VectorOptimizer`) and returns how far they moved the vectors; the guess plus that move is scored
with a gradient to the guess alone. That is the first-order unrolled loss of GradMem and
first-order MAML: no second derivatives, K + 1 passes of the frozen model a batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..encode.learned_vectors import around
from ..encode.vector_optimizer import VectorOptimizer
from ..limits import PLACEHOLDER
from ..model.forward import padded_pass
from ..model.layout import Layout
from ..model.model import FrozenLM
from ..settings.recipes import Recipe

Place = Callable[[torch.Tensor], torch.Tensor]  # vectors -> vectors with their semantic codes in place


def reconstruction(lm: FrozenLM, vectors: torch.Tensor, texts: list[list[int]]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per text: mean cross-entropy of its tokens and EOS after [BOS, its vectors] (with a gradient to
    the vectors), targets right, and targets. `vectors` is [B, K, d]."""
    layout = Layout.build(lm, PLACEHOLDER, vectors.shape[1], bos=True)  # the default encode's: BOS, then the vectors
    seqs = [layout.inputs(lm, v, t) for v, t in zip(vectors, texts)]
    ce, right, _, rows, n = padded_pass(lm, seqs, [t + [lm.eos_id] for t in texts], [layout.first_target] * len(texts))
    zeros = torch.zeros(len(texts), device=ce.device)
    return zeros.index_add(0, rows, ce) / n, zeros.index_add(0, rows, right.float()), n.float()


def after_steps(lm: FrozenLM, recipe: Recipe, guess: torch.Tensor, texts: list[list[int]], steps: int,
                place: Place | None = None) -> torch.Tensor:
    """[B, K, d], no gradient: where `steps` of the encode's optimisation under `recipe` take each
    text's vectors from `guess` [B, K, d], less the guess."""
    begun = guess.detach().float()
    learned = [around(lm, recipe, g) for g in begun]
    opts = [[VectorOptimizer(recipe) for _ in x.params] for x in learned]
    params = [p for x in learned for p in x.params]
    for _ in range(steps):
        vectors = torch.stack([x.vectors() for x in learned]).to(guess.dtype)
        ce, _, _ = reconstruction(lm, vectors if place is None else place(vectors), texts)
        grads = torch.autograd.grad(ce.sum(), params)
        VectorOptimizer.update_all([o for per in opts for o in per], params, list(grads))
    with torch.no_grad():
        return (torch.stack([x.vectors() for x in learned]) - begun).to(guess.dtype)


def unrolled(lm: FrozenLM, recipe: Recipe, guess: torch.Tensor, texts: list[list[int]], steps: int,
             place: Place | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`reconstruction` after `steps` of the encode from `guess`, with a gradient to the guess
    (first-order: the steps' own dependence on the guess is left out). 0 steps: the guess itself."""
    moved = guess + after_steps(lm, recipe, guess, texts, steps, place) if steps else guess
    return reconstruction(lm, moved if place is None else place(moved), texts)
