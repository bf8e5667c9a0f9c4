"""The update rules: memtok's per-text optimiser is torch's Adam/AdamW, and `paper` is plain SGD lr 5."""

import pytest
import torch

from memtok.optim import VectorOptimizer
from memtok.recipes import KURATOV, MEMTOK, MEMTOK_SGD, PAPER, Optimizer, Schedule


def _run_ours(recipe, p0, grads):
    p, opt = p0.clone(), VectorOptimizer(recipe)
    for g in grads:
        opt.update(p, g)
    return p


def _run_torch(cls, p0, grads, **kw):
    p = p0.clone().requires_grad_(True)
    opt = cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


# Elementwise updates from torch's and from ours differ only in the order of rounding: a step rounds
# about 6 times (two moments, two bias corrections, the square root, divide and add), each by at
# most half a float32 ulp, so 7 steps stay within 7 * 6 * eps of each other, relative to values
# of order one (the problem's parameters and gradients are standard normal).
STEPS = 7
TOL = {"rtol": STEPS * 6 * torch.finfo(torch.float32).eps, "atol": STEPS * 6 * torch.finfo(torch.float32).eps}


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 8, generator=gen), [torch.randn(2, 8, generator=gen) for _ in range(STEPS)]


def test_adam_matches_torch(problem):
    p0, grads = problem
    adam = MEMTOK.replace(optimizer=Optimizer.ADAM, lr=0.03)
    ours = _run_ours(adam, p0, grads)
    ref = _run_torch(torch.optim.Adam, p0, grads, lr=0.03, betas=adam.betas)
    torch.testing.assert_close(ours, ref, **TOL)


def test_adamw_matches_torch(problem):
    p0, grads = problem
    assert KURATOV.optimizer is Optimizer.ADAMW
    ours = _run_ours(KURATOV, p0, grads)
    ref = _run_torch(torch.optim.AdamW, p0, grads, lr=0.01, betas=(0.9, 0.9), weight_decay=0.01)
    torch.testing.assert_close(ours, ref, **TOL)


def test_default_recipe_is_adam_on_a_rank_32_factorisation(problem):
    p0, grads = problem
    assert (MEMTOK.optimizer, MEMTOK.lr, MEMTOK.rank, MEMTOK.bos) == (Optimizer.ADAM, 0.2, 32, True)
    ref = _run_torch(torch.optim.Adam, p0, grads, lr=MEMTOK.lr, betas=MEMTOK.betas)
    torch.testing.assert_close(_run_ours(MEMTOK, p0, grads), ref, **TOL)


def test_previous_default_is_plain_sgd_at_lr_10(problem):
    p0, grads = problem
    assert (MEMTOK_SGD.optimizer, MEMTOK_SGD.lr, MEMTOK_SGD.momentum, MEMTOK_SGD.rank) == (Optimizer.SGD, 10.0, 0.0, 0)
    torch.testing.assert_close(_run_ours(MEMTOK_SGD, p0, grads), p0 - 10.0 * sum(grads))


def test_paper_recipe_is_plain_sgd_at_lr_5(problem):
    p0, grads = problem
    assert (PAPER.optimizer, PAPER.lr, PAPER.max_steps, PAPER.bos) == (Optimizer.SGD, 5.0, 3000, False)
    expected = p0.clone()
    for g in grads:
        expected = expected - 5.0 * g
    torch.testing.assert_close(_run_ours(PAPER, p0, grads), expected)


def test_cosine_schedule_runs_from_lr_to_final_ratio():
    recipe = MEMTOK.replace(schedule=Schedule.COSINE, lr=0.1, final_lr_ratio=0.1, max_steps=100)
    opt = VectorOptimizer(recipe)
    assert opt.lr() == pytest.approx(0.1)
    opt.step = 50
    assert opt.lr() == pytest.approx(0.055)
    opt.step = 100
    assert opt.lr() == pytest.approx(0.01)


def test_sgd_momentum_matches_torch(problem):
    p0, grads = problem
    recipe = PAPER.replace(lr=0.5, momentum=0.9)
    ref = _run_torch(torch.optim.SGD, p0, grads, lr=0.5, momentum=0.9)
    torch.testing.assert_close(_run_ours(recipe, p0, grads), ref, **TOL)
