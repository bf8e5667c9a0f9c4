"""What a text's memory vectors are made of while they learn: where they begin, and their parameters.

The recipe decides both: the initial vectors (a learned start's guess, the mean embedding, the text's
own mean, or noise) and whether the optimiser moves the vectors themselves or a low-rank offset from
them (`initial + z @ W.T`), which finds exact vectors in far fewer steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.model import FrozenLM
from ..settings.recipes import Init, Recipe
from ..start.start import LearnedStart


def initial_vectors(lm: FrozenLM, init: Init, seed: int, start: LearnedStart | None, k: int,
                    text_ids: list[int], code: torch.Tensor | None = None) -> torch.Tensor:
    """Initial [K, d] vectors for one text from `init`; the same whatever the batch. `Init.LEARNED`
    reads `start` (told the text's semantic `code` [r], if any), and without one (`memtok.encode.resolved`
    warns) starts from the mean embedding; `Init.NORMAL` draws with `seed`."""
    if init is Init.TEXT:
        vec = lm.embed(torch.tensor(text_ids, device=lm.device)).mean(0)
        return vec.expand(k, -1).clone()
    if init is Init.LEARNED and start is not None:
        with torch.no_grad():
            return start.vectors(lm, [text_ids], k, None if code is None else code[None])[0].clone()
    if init in (Init.MEAN, Init.LEARNED):
        return lm.embedding_mean.expand(k, -1).clone()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(k, lm.hidden_size, generator=gen)
    return (noise * lm.embedding_std).to(lm.device, lm.dtype)


@dataclass
class FullVectors:
    """The vectors themselves are the parameters."""

    v: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.v]

    def vectors(self) -> torch.Tensor:
        return self.v


@dataclass
class LowRankVectors:
    """`initial + z @ W.T`, with z [K, rank] and W [d, rank] both learned: a per-text low-dimensional
    projection, which finds exact vectors in far fewer steps than learning them directly."""

    initial: torch.Tensor
    z: torch.Tensor
    w: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.z, self.w]

    def vectors(self) -> torch.Tensor:
        return self.initial + self.z @ self.w.T


def parameters(lm: FrozenLM, recipe: Recipe, start: LearnedStart | None, k: int, text_ids: list[int],
               restart: int = 0, code: torch.Tensor | None = None) -> FullVectors | LowRankVectors:
    """One text's learned parameters, from the recipe's `init` at first and its
    `restart_init` on a restart, in float32 whatever the model's dtype: Adam's small steps would
    vanish in bfloat16's 8 bits of mantissa."""
    init = recipe.restart_init if restart else recipe.init
    return around(lm, recipe, initial_vectors(lm, init, recipe.seed, start, k, text_ids, code).float(), restart)


def around(lm: FrozenLM, recipe: Recipe, initial: torch.Tensor, restart: int = 0) -> FullVectors | LowRankVectors:
    """The recipe's parameters of vectors that begin at `initial` [K, d] (float32). Each restart draws
    its own factorisation (W's columns at the embeddings' scale / sqrt(rank), z at the recipe's
    `z_scale`), so a restart from the learned start begins a new random step away from it; the first
    is the same for every text, which lets a start be trained through an encode's first steps."""
    if not recipe.rank:
        return FullVectors(initial.clone().requires_grad_(True))
    gen = torch.Generator().manual_seed(recipe.seed + restart)
    w = torch.randn(initial.shape[1], recipe.rank, generator=gen) * (lm.embedding_std / recipe.rank ** 0.5)
    z = torch.randn(initial.shape[0], recipe.rank, generator=gen) * recipe.z_scale
    return LowRankVectors(initial, z.to(initial).requires_grad_(True), w.to(initial).requires_grad_(True))
