"""Optimise memory vectors for many texts at once.

A padded batch of `batch_size` slots, each holding one text with its own vectors and optimiser.
Every step is one forward and backward pass of the frozen model over the whole batch; a text
leaves its slot the moment it is done (or given up), and the next text in the queue takes the
slot at the next step, so one hard text never holds the others back.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from .layout import Layout
from .models import FrozenLM
from .optim import VectorOptimizer
from .recipes import Init, Recipe
from .storage import rounded, straight_through

IGNORE = -100


@dataclass
class Job:
    """One optimisation to run: the ids the vectors must make the model produce, and how many vectors."""

    key: object  # the caller's handle, given back in `Encoded.key`
    targets: list[int]  # what greedy decoding must give: a text's ids and EOS (capacity runs may omit EOS)
    k: int
    max_steps: int | None = None  # None: the recipe's


@dataclass
class Encoded:
    """One job's optimisation outcome, before greedy verification."""

    key: object
    memory: torch.Tensor  # [K, d], float32 values exactly representable in the storage dtype, on the CPU
    steps: int
    seconds: float
    loss: float  # mean cross-entropy per target (EOS included) of `memory`
    min_margin: float  # smallest (target logit - best other logit); negative where a token is wrong
    token_accuracy: float  # teacher-forced share of targets (EOS included) whose argmax is right
    converged: bool  # every argmax right with at least the recipe's margin
    targets: list[int]  # the job's, which greedy decoding must give


@dataclass
class StepInfo:
    """What a progress display needs after each step."""

    active: int  # texts in this step's forward pass
    done: int
    total: int
    loss: float
    accuracy: float


def show_steps(bar) -> Callable[[StepInfo], None]:
    """An `on_step` that writes the batch's step, loss and accuracy into a tqdm bar's postfix: one
    text can take minutes, and a bar that counts only finished texts would look stuck (a segmented
    text finishes only with its last segment: `optimised` counts segments and retries too)."""
    steps = 0

    def on_step(info: StepInfo) -> None:
        nonlocal steps
        steps += 1
        bar.set_postfix(step=steps, optimised=f"{info.done}/{info.total}", active=info.active,
                        loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.3f}", refresh=False)
        bar.update(0)

    return on_step


class _Slot:
    def __init__(self, job: Job, targets: torch.Tensor, text_emb: torch.Tensor, start: torch.Tensor,
                 recipe: Recipe, dtype: str, first_target: int, params: list[torch.Tensor]) -> None:
        self.job = job
        self.max_steps = job.max_steps or recipe.max_steps
        self.first_target = first_target  # input position whose logits predict targets[0]
        self.targets = targets  # [n]
        self.text_emb = text_emb  # [n - 1, d]
        self.start = start  # [K, d]
        self.params = params  # the only leaves that learn, each with its own optimiser state
        self.opts = [VectorOptimizer(recipe) for _ in self.params]
        self.dtype = dtype
        self.started = time.perf_counter()
        self.best: tuple[float, float, float, torch.Tensor] | None = None  # accuracy, margin, loss, memory
        self.since_best = 0

    @property
    def steps(self) -> int:
        return self.opts[0].step

    def vectors(self) -> torch.Tensor:
        """The [K, d] vectors the parameters stand for (with a gradient path to them)."""
        if len(self.params) == 1:
            return self.params[0]
        z, w = self.params
        return self.start + z @ w.T

    def update(self) -> None:
        for p, opt in zip(self.params, self.opts, strict=True):
            opt.update(p, p.grad)
            p.grad = None

    def stored(self) -> torch.Tensor:
        """The vectors as they would be saved: what this step's forward pass saw."""
        return rounded(self.vectors(), self.dtype).clone()

    def result(self, converged: bool, accuracy: float, margin: float, loss: float) -> Encoded:
        if not converged and self.best is not None and self.best[0] > accuracy:
            accuracy, margin, loss, memory = self.best
        else:
            memory = self.stored()
        return Encoded(self.job.key, memory.float().cpu(), self.steps, time.perf_counter() - self.started,
                       loss, margin, accuracy, converged, self.job.targets)


def initial_memory(lm: FrozenLM, recipe: Recipe, k: int, text_ids: list[int]) -> torch.Tensor:
    """The recipe's starting point for one text's [K, d] vectors; the same whatever the batch."""
    weight = lm.model.get_input_embeddings().weight
    if recipe.init is Init.TEXT:
        vec = lm.embed(torch.tensor(text_ids, device=lm.device)).mean(0)
        return vec.expand(k, -1).clone()
    if recipe.init is Init.MEAN:
        return lm.embedding_mean.expand(k, -1).clone()
    gen = torch.Generator().manual_seed(recipe.seed)
    noise = torch.randn(k, weight.shape[1], generator=gen)
    return (noise * lm.embedding_std).to(lm.device, weight.dtype)


def learned_parameters(start: torch.Tensor, recipe: Recipe, scale: float) -> list[torch.Tensor]:
    """What the optimiser updates: the vectors themselves, or with a `rank` the factors z [K, rank]
    and W [d, rank] of `start + z @ W.T` (W's columns at `scale` / sqrt(rank), z at 1)."""
    if not recipe.rank:
        return [start.clone().requires_grad_(True)]
    gen = torch.Generator().manual_seed(recipe.seed)
    w = torch.randn(start.shape[1], recipe.rank, generator=gen) * (scale / recipe.rank ** 0.5)
    z = torch.randn(start.shape[0], recipe.rank, generator=gen)
    return [z.to(start).requires_grad_(True), w.to(start).requires_grad_(True)]


def optimise(lm: FrozenLM, layout: Layout, recipe: Recipe, jobs: Iterable[Job], batch_size: int = 8,
             on_step: Callable[[StepInfo], None] | None = None, dtype: str = "float32") -> Iterator[Encoded]:
    """Yield an `Encoded` for each job, in the order they finish.

    `jobs` is consumed as slots free up; when it is a deque, jobs the caller appends while iterating
    (a retry with more vectors, say) join the same batch. Jobs may differ in K: each text's targets
    are aligned to its own first target position. With a storage `dtype` below float32 every
    forward pass sees the vectors rounded to it, so the exactness judged here is that of the memory
    as it will be saved.
    """
    dev = lm.device
    with torch.no_grad():
        prefix_emb = lm.embed(torch.tensor(layout.prefix_ids, dtype=torch.long, device=dev))
        infix_emb = lm.embed(torch.tensor(layout.infix_ids, dtype=torch.long, device=dev))
    keeps_logits = "logits_to_keep" in inspect.signature(lm.model.forward).parameters
    queue = jobs if isinstance(jobs, deque) else deque(jobs)
    slots: list[_Slot] = []
    done = 0
    while queue or slots:
        # 1. refill free slots from the queue
        while queue and len(slots) < batch_size:
            job = queue.popleft()
            ids = torch.tensor(job.targets, dtype=torch.long, device=dev)
            with torch.no_grad():
                text_emb = lm.embed(ids[:-1])
            start = initial_memory(lm, recipe, job.k, job.targets[:-1])
            slots.append(_Slot(job, ids, text_emb, start, recipe, dtype, layout.with_k(job.k).first_target,
                               learned_parameters(start, recipe, lm.embedding_std)))

        # 2. forward: right padding keeps every text's positions and attention as when alone
        seqs = [torch.cat([prefix_emb, straight_through(s.vectors(), s.dtype), infix_emb, s.text_emb]) for s in slots]
        lengths = torch.tensor([len(x) for x in seqs], device=dev)
        x = pad_sequence(seqs, batch_first=True)
        mask = (torch.arange(x.shape[1], device=dev)[None] < lengths[:, None]).long()
        first = min(s.first_target for s in slots)
        n_keep = x.shape[1] - first
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=recipe.bf16):
            if keeps_logits:
                logits = lm.model(inputs_embeds=x, attention_mask=mask, logits_to_keep=n_keep, use_cache=False).logits
            else:
                logits = lm.model(inputs_embeds=x, attention_mask=mask, use_cache=False).logits[:, -n_keep:]
        logits = logits.float()
        # [B, N]: row j's targets start at its own first target; positions before it and padding are ignored
        tgt = pad_sequence([F.pad(s.targets, (s.first_target - first, 0), value=IGNORE) for s in slots],
                           batch_first=True, padding_value=IGNORE)

        # 3. judge each text on these logits, i.e. on the vectors that produced them
        with torch.no_grad():
            valid = tgt != IGNORE
            safe_tgt = tgt.clamp_min(0)
            top2 = logits.detach().topk(2, dim=-1)
            tgt_logit = logits.detach().gather(-1, safe_tgt[..., None])[..., 0]
            right = top2.indices[..., 0] == safe_tgt
            rival = torch.where(right, top2.values[..., 1], top2.values[..., 0])
            margin = torch.where(valid, tgt_logit - rival, torch.inf)
            n = valid.sum(1)
            accuracy = ((right & valid).sum(1) / n).tolist()
            min_margin = margin.min(1).values.tolist()
        ce = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=IGNORE, reduction="none")  # [B, N]
        weight = valid.float()
        if recipe.wrong_weight:
            weight = weight + recipe.wrong_weight * (valid & ~right).float()
        per_text = (ce * weight).sum(1) / n
        losses = per_text.tolist()

        still: list[_Slot] = []
        for j, s in enumerate(slots):
            acc, marg, loss = accuracy[j], min_margin[j], losses[j]
            converged = acc == 1.0 and marg > 0 and marg >= recipe.min_margin
            if s.best is None or acc > s.best[0]:
                s.best, s.since_best = (acc, marg, loss, s.stored()), 0
            else:
                s.since_best += 1
            gave_up = s.steps >= s.max_steps or (recipe.patience is not None and s.since_best >= recipe.patience)
            if converged or gave_up:
                done += 1
                yield s.result(converged, acc, marg, loss)
            else:
                still.append(s)
        if on_step is not None:
            on_step(StepInfo(len(slots), done, done + len(queue) + len(still), sum(losses) / len(losses),
                             sum(accuracy) / len(accuracy)))
        if not still:
            slots = []
            continue

        # 4. backward and update the texts still in play; each text's loss only reaches its own vectors
        per_text.sum().backward()
        for s in still:
            s.update()
        slots = still
