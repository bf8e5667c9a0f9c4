"""The update rules: memtok's per-text optimiser is torch's Adam/AdamW, and `paper` is plain SGD lr 5."""

import pytest
import torch

from memtok.encode.resolved import resolve
from memtok.encode.vector_optimizer import VectorOptimizer
from memtok.settings.recipes import KURATOV, MEMTOK, MEMTOK_SGD, PAPER, Optimizer, Schedule


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


def test_warm_up_ramps_the_rate_then_the_schedule_runs_over_the_rest():
    recipe = MEMTOK.replace(schedule=Schedule.COSINE, lr=0.1, final_lr_ratio=0.1, max_steps=110, warmup_steps=10)
    opt = VectorOptimizer(recipe)
    assert opt.lr() == pytest.approx(0.01)  # the first step: a tenth of the rate
    opt.step = 9
    assert opt.lr() == pytest.approx(0.1)
    opt.step = 60  # half-way through the 100 steps after the warm-up
    assert opt.lr() == pytest.approx(0.055)
    opt.step = 110
    assert opt.lr() == pytest.approx(0.01)


def test_clipping_bounds_each_texts_step(tiny_codec):
    from memtok import EncodeConfig
    from memtok.encode.batch import update
    from memtok.encode.jobs import Job
    from memtok.encode.slot import TextSlot

    lm = tiny_codec.lm
    job = Job(0, tiny_codec.target_ids("the cat sat on the mat."), 1)
    for clip, bound in ((1.0, 10 * 1.0), (0.0, None)):
        slot = TextSlot(lm, job, resolve(lm, EncodeConfig(k=1, recipe=MEMTOK_SGD.replace(clip=clip))))  # SGD at lr 10 on the vector itself
        before = slot.learned.vectors().detach().clone()
        slot.learned.params[0].grad = torch.full_like(before, 100.0)
        update([slot])
        moved = float((slot.learned.vectors().detach() - before).norm())
        if bound is None:  # unclipped: lr x the gradient's norm
            assert moved == pytest.approx(10 * 100.0 * before.numel() ** 0.5, rel=1e-5)
        else:  # clipped to norm 1, a step of lr 10 moves it by 10; float32 rounding is far below 1e-3 of that
            assert moved <= bound * (1 + 1e-3)


def test_position_weights_raise_the_loss_of_the_first_tokens_and_eos(tiny_codec):
    from memtok import EncodeConfig
    from memtok.encode.jobs import Job
    from memtok.encode.optimise import optimise

    lm = tiny_codec.lm
    targets = tiny_codec.target_ids("the cat sat on the mat.")
    still = MEMTOK.replace(max_steps=1, lr=1e-12)  # an update too small to move the vectors: the same logits

    def loss(recipe):
        return next(optimise(lm, resolve(lm, EncodeConfig(recipe=recipe)), [Job(0, targets, 1)])).loss

    assert loss(still.replace(first_weight=3.0, eos_weight=3.0)) > loss(still)


def test_a_growing_target_plays_a_prefix_first_and_ends_exact_on_the_whole_text(tiny_codec):
    from memtok import EncodeConfig
    from memtok.encode.jobs import Job
    from memtok.encode.optimise import optimise

    lm = tiny_codec.lm
    targets = tiny_codec.target_ids("the cat sat on the mat.")
    growing = MEMTOK.replace(grow_tokens=3)
    first = next(optimise(lm, resolve(lm, EncodeConfig(recipe=growing.replace(max_steps=1))), [Job(0, targets, 1)]))
    assert first.token_accuracy <= 3 / len(targets)  # targets not yet in play count as wrong
    (_, result, exact), = tiny_codec.encode_ids([targets], EncodeConfig(k=1, recipe=growing))
    assert exact and result.converged and result.token_accuracy == 1.0 and result.targets == targets


def test_a_long_optimisation_is_verified_at_once_rather_than_held_for_a_full_batch(tiny_codec, monkeypatch):
    import memtok.encode.optimise as optimise_module
    from memtok import EncodeConfig

    targets = [tiny_codec.target_ids(t) for t in ["the cat sat.", "a dog ran far away."]]
    batches = []
    import memtok.encode.batch

    real_verify = memtok.encode.batch.verify
    monkeypatch.setattr(memtok.encode.batch, "verify", lambda *a: batches.append(len(a[3])) or real_verify(*a))
    for at_once, expected in ((float("inf"), [2]), (0.0, [1, 1])):  # 0: every result counts as long
        monkeypatch.setattr(optimise_module, "VERIFY_AT_ONCE_SECONDS", at_once)
        batches.clear()
        verdicts = list(tiny_codec.encode_ids(targets, EncodeConfig(k=1, recipe="memtok", batch_size=4, max_steps=40)))
        assert batches == expected and len(verdicts) == 2


@pytest.mark.parametrize("recipe", [MEMTOK, KURATOV, MEMTOK.replace(warmup_steps=3, schedule=Schedule.COSINE),
                                    MEMTOK_SGD.replace(momentum=0.9)], ids=["adam", "adamw", "cosine", "sgd"])
def test_many_tensors_update_at_once_to_the_bits_of_one_at_a_time(recipe):
    """Every text of a step in a few multi-tensor kernels: each with its own step count (texts join
    the batch at different times), the same bits as updating them one by one."""

    gen = torch.Generator().manual_seed(0)
    shapes = [(1, 64), (32, 2), (3, 64)]
    alone = [torch.randn(s, generator=gen) for s in shapes]
    together = [p.clone() for p in alone]
    one, many = [VectorOptimizer(recipe) for _ in shapes], [VectorOptimizer(recipe) for _ in shapes]
    for t in range(6):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        moving = [i for i in range(len(shapes)) if t >= i]  # the i-th tensor joins at step i
        for i in moving:
            one[i].update(alone[i], grads[i])
        VectorOptimizer.update_all([many[i] for i in moving], [together[i] for i in moving], [grads[i] for i in moving])
    assert all(torch.equal(a, b) for a, b in zip(alone, together))
    assert [o.step for o in one] == [o.step for o in many]
