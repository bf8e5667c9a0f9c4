"""Optimise memory vectors for many texts at once.

A padded batch of `batch_size` slots, each holding one text with its own vectors and optimiser.
Every step is one forward and backward pass of the frozen model over the whole batch; a text
leaves its slot the moment it is done (or given up), and the next text in the queue takes the
slot at the next step, so one hard text never holds the others back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
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


MAX_BATCH_TOKENS = 1024  # input positions in one forward pass: what bounds memory, whatever the texts
HEAD_CHUNK = 256  # target positions whose logits [chunk, vocab] exist at once


def _judge(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor,
           t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per position: cross-entropy, argmax right, margin (target logit - best other logit)."""
    logits = head(h).float()
    ce = F.cross_entropy(logits, t, reduction="none")
    with torch.no_grad():
        top2 = logits.topk(2, dim=-1)
        right = top2.indices[:, 0] == t
        rival = torch.where(right, top2.values[:, 1], top2.values[:, 0])
        margin = logits.gather(-1, t[:, None])[:, 0] - rival
    return ce, right, margin


def score_positions(lm: FrozenLM, x: torch.Tensor, mask: torch.Tensor, first: int, valid: torch.Tensor,
                    targets: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_judge` at every valid target position (flattened, row by row) of the batch `x`, from input
    position `first` on. The logits are made `HEAD_CHUNK` positions at a time and remade during the
    backward pass (checkpointing), so memory holds one chunk of [positions, vocabulary], not all."""
    dev = x.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        if lm.split_head is not None:
            decoder, head = lm.split_head
            states = decoder(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state[:, first:]
        else:
            head = torch.nn.Identity()
            states = lm.model(inputs_embeds=x, attention_mask=mask, use_cache=False).logits[:, first:]
        states, t = states[valid], targets[valid]
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


def optimise(lm: FrozenLM, layout: Layout, recipe: Recipe, jobs: Iterable[Job], batch_size: int = 8,
             on_step: Callable[[StepInfo], None] | None = None, dtype: str = "float32",
             max_batch_tokens: int = MAX_BATCH_TOKENS) -> Iterator[Encoded]:
    """Yield an `Encoded` for each job, in the order they finish.

    `jobs` is consumed as slots free up (at most `batch_size` texts and `max_batch_tokens` padded
    positions in a pass); when it is a deque, jobs the caller appends while iterating (a retry with
    more vectors, say) join the same batch. Jobs may differ in K: each text's targets are aligned to
    its own first target position. With a storage `dtype` below float32 every forward pass sees the
    vectors rounded to it, so the exactness judged here is that of the memory as it will be saved.
    """
    dev = lm.device
    with torch.no_grad():
        prefix_emb = lm.embed(torch.tensor(layout.prefix_ids, dtype=torch.long, device=dev))
        infix_emb = lm.embed(torch.tensor(layout.infix_ids, dtype=torch.long, device=dev))
    prompt = len(layout.prefix_ids) + len(layout.infix_ids)
    queue = jobs if isinstance(jobs, deque) else deque(jobs)
    slots: list[_Slot] = []
    done = 0
    while queue or slots:
        # 1. refill free slots from the queue
        while queue and len(slots) < batch_size and _fits(slots, queue[0], prompt, max_batch_tokens):
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
        # [B, N]: row j's targets start at its own first target; positions before it and padding are ignored
        tgt = pad_sequence([F.pad(s.targets, (s.first_target - first, 0), value=IGNORE) for s in slots],
                           batch_first=True, padding_value=IGNORE)
        valid = tgt != IGNORE
        ce, right, margin = score_positions(lm, x, mask, first, valid, tgt, recipe.bf16)

        # 3. judge each text on these logits, i.e. on the vectors that produced them
        rows = valid.nonzero()[:, 0]
        n = valid.sum(1)
        zeros = torch.zeros(len(slots), device=dev)
        accuracy = (zeros.index_add(0, rows, right.float()) / n).tolist()
        min_margin = torch.full_like(zeros, torch.inf).scatter_reduce(0, rows, margin, "amin").tolist()
        weight = 1.0 + recipe.wrong_weight * (~right).float()
        per_text = zeros.index_add(0, rows, ce * weight) / n
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
        # 4. backward and update the texts still in play; each text's loss only reaches its own vectors
        if still:
            per_text.sum().backward()
            for s in still:
                s.update()
        slots = still
        # a pass with no backward keeps its graph (activations) alive through the next forward otherwise
        del ce, per_text
