"""Updates of each text's memory vectors, with their own optimiser state.

Each text in a batch owns its vectors, its moments and its step count, so it learns exactly as it
would alone and a slot refilled with a new text starts from a clean state. The arithmetic is
torch.optim.Adam/AdamW's (tests pin it to torch's), written once, in torch's multi-tensor
(`_foreach`) kernels: every text of a step in a few kernels, each tensor with its own step, rate and
bias corrections.
"""

from __future__ import annotations

import math

import torch

from ..settings.recipes import Optimizer, Recipe, Schedule


class VectorOptimizer:
    """One tensor's optimiser state under a recipe; `VectorOptimizer.update_all` moves many at once."""

    def __init__(self, recipe: Recipe, eps: float = 1e-8) -> None:
        self.recipe = recipe
        self.eps = eps
        self.step = 0
        self._m: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def moments(self) -> list[torch.Tensor]:
        """The running moments (none before the first update, or for plain SGD): what a checkpoint keeps."""
        return [m for m in (self._m, self._v) if m is not None]

    def restore(self, step: int, moments: list[torch.Tensor]) -> None:
        """Go on from a checkpoint's step and `moments`."""
        self.step = step
        self._m, self._v = ([*moments, None, None])[:2]

    def lr(self) -> float:
        r = self.recipe
        if self.step < r.warmup_steps:
            return r.lr * (self.step + 1) / r.warmup_steps
        if r.schedule is Schedule.CONSTANT:
            return r.lr
        t = min((self.step - r.warmup_steps) / max(1, r.max_steps - r.warmup_steps), 1.0)
        low = r.lr * r.final_lr_ratio
        return low + 0.5 * (r.lr - low) * (1 + math.cos(math.pi * t))

    def update(self, p: torch.Tensor, grad: torch.Tensor) -> None:
        """One step of `p` along `grad`."""
        VectorOptimizer.update_all([self], [p], [grad])

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        if self.recipe.momentum:
            self._m = grad.clone() if self._m is None else self._m.mul_(self.recipe.momentum).add_(grad)
            grad = self._m
        p.add_(grad, alpha=-lr)

    @staticmethod
    @torch.no_grad()
    def update_all(opts: list[VectorOptimizer], params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """`opts[i]` steps `params[i]` along `grads[i]`, for every i; the optimisers are all of one recipe."""
        if not opts:
            return
        r, eps = opts[0].recipe, opts[0].eps
        lrs = [opt.lr() for opt in opts]
        for opt in opts:
            opt.step += 1
        if r.optimizer is Optimizer.SGD:  # a kernel or two a tensor already
            for opt, p, g, lr in zip(opts, params, grads, lrs, strict=True):
                opt._sgd(p, g, lr)
            return
        for opt, p in zip(opts, params, strict=True):
            if opt._m is None:
                opt._m, opt._v = torch.zeros_like(p), torch.zeros_like(p)
        b1, b2 = r.betas
        ms, vs = [opt._m for opt in opts], [opt._v for opt in opts]
        if r.optimizer is Optimizer.ADAMW:
            torch._foreach_mul_(params, [1 - lr * r.weight_decay for lr in lrs])
        torch._foreach_lerp_(ms, grads, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1 - b2 ** opt.step) for opt in opts])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, ms, denom, [-lr / (1 - b1 ** opt.step) for lr, opt in zip(lrs, opts)])
