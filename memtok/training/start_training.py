"""Train a learned start (`memtok.start.start`) for one model: the whole loop, read top to bottom.

The loss is the memory's own: the frozen model's cross-entropy of each text (and EOS) after
[BOS, proposed vector], back-propagated into the small network only. The run lives in a folder:
`state.pt` (network, optimiser, step; saved every `save_every` steps, atomically) so that a
stopped run goes on where it stopped, `log.jsonl` (the training curve), and `start.safetensors`
(the network, fp16) with its held-out figures, rewritten at each evaluation, beside snapshots
`start-<examples>.safetensors` at log-spaced numbers of examples seen (the scaling curve's points).

The network reads semantic codes when it is an `AttentionStart`: a share of the batches have a
random code fixed in the semantic subspace (`memtok.start.semantic`), as a semantic memory has, and the
network is told it, so one start serves plain and semantic memories of any teacher. Every fourth
batch asks for two vectors a text, as the plan's retries do.

On several processes (torchrun: one per GPU, or gloo on CPUs) each takes its share of every batch
and DDP averages the gradients; the first process alone writes the folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import MemtokError
from ..files import atomic_write
from ..model.model import FrozenLM
from ..settings.recipes import MEMTOK_LEARNED, Recipe, parse_recipe
from ..start.semantic import place, subspace
from ..start.start import LearnedStart, propose
from ..start.start_nets import NETS, feature_layers, make_net
from .config import TrainConfig
from .losses import reconstruction, unrolled


def snapshot_points(batch_size: int, steps: int) -> set[int]:
    """Steps after which a snapshot is kept: where 1000 * 2^i examples have been seen."""
    return {-(-1000 * 2 ** i // batch_size) for i in range(32) if 1000 * 2 ** i <= batch_size * steps}


def process_group() -> tuple[int, int]:
    """(this process's rank, how many): (0, 1) unless started by torchrun."""
    dist = torch.distributed
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def held_out_figures(lm: FrozenLM, start: LearnedStart, held: list[list[int]], batch_size: int,
                     recipe: Recipe | None = None, steps: int = 0) -> dict:
    """On held-out pieces, the start before any optimisation step (and, given `steps`, after that
    many of `recipe`'s steps: what an unrolled start is trained on): loss, token accuracy, and the
    share already exact teacher-forced; beside the same for the mean embedding (the old start)."""
    figures = {}
    for name, learned in (("learned", True), ("mean", False)):
        for after in sorted({0, steps}):
            loss = right = total = exact = 0.0
            for i in range(0, len(held), batch_size):
                batch = held[i:i + batch_size]
                with torch.no_grad():
                    v = start.vectors(lm, batch) if learned else lm.embedding_mean.expand(len(batch), 1, -1)
                ce, r, n = unrolled(lm, recipe, v, batch, after) if after else reconstruction(lm, v, batch)
                loss, right, total = loss + float(ce.sum()), right + float(r.sum()), total + float(n.sum())
                exact += float((r == n).sum())
            figures[name + (f"+{after}" if after else "")] = {
                "loss": round(loss / len(held), 4), "token_accuracy": round(right / total, 4),
                "exact": round(exact / len(held), 4)}
    return figures


def _step_of(row: str) -> float:
    """The step a curve row is about; infinity for one that is not a row (cut off, or run together
    with the next by a kill), so that it is dropped."""
    try:
        return json.loads(row)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class _Run:
    """The folder of one training run: its state, curve and start file."""

    def __init__(self, out: Path, lm: FrozenLM, cfg: TrainConfig) -> None:
        self.out, self.lm, self.cfg = out, lm, cfg
        out.mkdir(parents=True, exist_ok=True)
        self.basis, self.scale = subspace(lm)
        with torch.random.fork_rng(devices=[]):  # the same first weights for the same seed, the caller's RNG untouched
            torch.manual_seed(cfg.seed)
            self.net = make_net(cfg.net, lm.hidden_size, feature_layers(lm.layers), cfg.width,
                                self.basis.shape[1] if NETS[cfg.net].reads_codes else 0)
        self.before = self.warm_start() if cfg.init_from else {}
        self.net.to(lm.device)
        self.recipe = parse_recipe(cfg.recipe)
        self.rank, self.world = process_group()
        # a batch without codes leaves the network's code input without a gradient
        self.trained = self.net if self.world == 1 else torch.nn.parallel.DistributedDataParallel(
            self.net, find_unused_parameters=True)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.step, self.seconds = 0, 0.0
        state_path = out / "state.pt"
        if state_path.exists():
            state = torch.load(state_path, map_location=lm.device, weights_only=True)
            pinned = {"fingerprint": lm.fingerprint, **dataclasses.asdict(cfg)}
            # a folder from before there were two networks trained the pooled one, in float32
            saved = {"net": "pooled-mlp", "semantic_share": cfg.semantic_share, "bf16": False, "unroll": 0,
                     "recipe": MEMTOK_LEARNED.name, "init_from": None, **json.loads(state["settings"])}
            if saved != pinned:
                raise MemtokError(f"{out} holds a start trained with other settings or another model; "
                                  "use another --out")
            self.net.load_state_dict(state["net"])
            self.opt.load_state_dict(state["opt"])
            self.step, self.seconds = int(state["step"]), float(state["seconds"])
            self.forget_after_state()

    def warm_start(self) -> dict:
        """Begin from the network of the start file `init_from` (of this model, kind and width); returns
        what that start's own training was, for the record."""
        begun = LearnedStart.load(self.cfg.init_from)
        if begun.model_fingerprint != self.lm.fingerprint:
            raise MemtokError(f"{self.cfg.init_from} is a start for another model")
        try:
            self.net.load_state_dict(begun.net.state_dict())
        except RuntimeError:
            raise MemtokError(f"{self.cfg.init_from} holds a network {begun.net.kind} of width {begun.net.width}, "
                              f"where this run asks for {self.cfg.net} of width {self.cfg.width}") from None
        return {"start": begun.name, "examples": begun.info.get("examples_in_all", begun.info.get("examples", 0)),
                "sources": begun.info.get("sources", [])}

    def forget_after_state(self) -> None:
        """Drop the curve's rows past the saved step: a run stopped between saves does those steps
        again on resuming, and the curve would hold them twice. A row cut off by a kill goes too."""
        path = self.out / "log.jsonl"
        if self.rank or not path.exists():
            return
        rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [r for r in rows if r.endswith("\n") and _step_of(r) <= self.step]
        if len(kept) < len(rows):
            atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept), encoding="utf-8"))

    def start(self) -> LearnedStart:
        return LearnedStart(self.net, self.lm.fingerprint, f"{self.lm.name}@{self.step}", {})

    def save_state(self) -> None:
        if self.rank:
            return
        settings = json.dumps({"fingerprint": self.lm.fingerprint, **dataclasses.asdict(self.cfg)})
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "seconds": self.seconds, "settings": settings}
        atomic_write(self.out / "state.pt", lambda tmp: torch.save(state, tmp))

    def batch(self, train: list[list[int]]) -> tuple[list[list[int]], int, torch.Tensor | None, float]:
        """This step's texts and codes to fix (or None), this process's share of them, the vectors a
        text and the weight of each of this process's texts in the batch's mean loss; drawn by
        generators seeded with the step, so a resumed run sees what an unbroken one would have, and
        the processes share one batch whatever their number. DDP averages the processes' gradients,
        so a text weighs world / batch wherever it lands; a process left without a text (a batch
        smaller than the process count) takes the first with weight 0, to join the gradients' average."""
        cfg, rng = self.cfg, random.Random(self.cfg.seed * 1_000_003 + self.step)
        texts = rng.sample(train, min(cfg.batch_size, len(train)))
        k = 2 if self.step % 4 == 3 else 1
        mine = list(range(self.rank, len(texts), self.world)) or [0]
        weight = self.world / len(texts) if self.rank < len(texts) else 0.0
        if not (self.net.code_rank and rng.random() < cfg.semantic_share):
            return [texts[i] for i in mine], k, None, weight
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        codes = torch.randn(len(texts), self.net.code_rank, generator=gen)
        codes = codes / codes.norm(dim=-1, keepdim=True) * self.scale
        return [texts[i] for i in mine], k, codes[mine].to(self.lm.device), weight

    def loss(self, texts: list[list[int]], k: int, codes: torch.Tensor | None, weight: float
             ) -> tuple[torch.Tensor, ...]:
        """This process's share of the batch's mean loss from what the network proposes, codes fixed in
        their subspace; with the per-text losses, targets right and targets."""
        with torch.autocast(self.lm.device.type, torch.bfloat16, enabled=self.cfg.bf16):
            v = propose(self.lm, self.trained, self.net.layers, texts, k, codes)
            at = None if codes is None else (lambda x: place(self.basis, x, codes[:, None]))
            ce, right, n = unrolled(self.lm, self.recipe, v, texts, self.cfg.unroll, at)
            return ce.sum() * weight, ce, right, n

    def log(self, row: dict) -> None:
        if self.rank:
            return
        with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def publish(self, held: list[list[int]], n_train: int, sources: list[str], snapshot: bool = False) -> dict:
        """Score the start on the held-out pieces and write it out with the figures and its sources
        (and as this step's snapshot)."""
        if self.rank:
            return {}
        self.net.eval()
        figures = held_out_figures(self.lm, self.start(), held, self.cfg.batch_size, self.recipe, self.cfg.unroll)
        self.net.train()
        examples = self.step * self.cfg.batch_size
        info = {"model": self.lm.name, "step": self.step, "examples": examples,
                "examples_in_all": examples + self.before.get("examples", 0), "warm_start": self.before,
                "train_pieces": n_train, "held_out_pieces": len(held), "sources": sources, "processes": self.world,
                "seconds": round(self.seconds), "held_out": figures, "config": dataclasses.asdict(self.cfg)}
        start = self.start()
        start.info = info
        start.save(self.out / "start.safetensors")
        if snapshot:
            start.save(self.out / f"start-{info['examples']}.safetensors")
        self.log({"step": self.step, "examples": info["examples"], "seconds": info["seconds"], "held_out": figures})
        return info


def train_start(lm: FrozenLM, train: list[list[int]], held: list[list[int]], out: str | Path, cfg: TrainConfig,
                on_step: Callable[[int, float, float], None] | None = None, sources: list[str] | None = None,
                budget_s: float | None = None) -> dict:
    """Train (or go on training) a start in `out`, for `budget_s` seconds at most if given; returns
    the held-out figures of the last evaluation (of the first process).

    The rate warms up over the first 100 steps and decays by a cosine to a tenth.
    """
    if not train or not held:
        raise MemtokError("no training text: the corpus gave no pieces of the asked lengths")
    lengths = {len(p) for p in train + held}
    if min(lengths) < cfg.min_tokens or max(lengths) > cfg.max_tokens:
        raise MemtokError(f"pieces of {min(lengths)}-{max(lengths)} tokens, where the config asks for "
                          f"{cfg.min_tokens}-{cfg.max_tokens} (training_pieces cuts them to its lengths)")
    run = _Run(Path(out), lm, cfg)
    held = random.Random(cfg.seed).sample(held, min(cfg.held_out, len(held)))  # every source's, not the first's
    sources, began_run = sources or [], time.perf_counter()
    snapshots = snapshot_points(cfg.batch_size, cfg.steps)
    info: dict = {}
    run.net.train()
    while run.step < cfg.steps and (budget_s is None or time.perf_counter() - began_run < budget_s):
        began = time.perf_counter()
        progress = run.step / cfg.steps
        rate = cfg.lr * min(1.0, (run.step + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        for group in run.opt.param_groups:
            group["lr"] = rate
        share, ce, right, n = run.loss(*run.batch(train))
        share.backward()
        loss = float(ce.detach().mean())
        torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
        run.opt.step()
        run.opt.zero_grad(set_to_none=True)
        run.step += 1
        run.seconds += time.perf_counter() - began
        accuracy = float(right.sum() / n.sum())
        run.log({"step": run.step, "loss": round(loss, 4), "accuracy": round(accuracy, 4), "lr": rate})
        if run.step % cfg.save_every == 0 or run.step == cfg.steps:
            run.save_state()
        if run.step % cfg.eval_every == 0 or run.step == cfg.steps or run.step in snapshots:
            info = run.publish(held, len(train), sources, snapshot=run.step in snapshots)
        if on_step is not None:
            on_step(run.step, loss, accuracy)
    run.save_state()
    return info or run.publish(held, len(train), sources)
