"""How a learned start is trained (`memtok.training.start_training`): the settings a run folder pins,
readable without torch, so that the command line's defaults and choices are these."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MemtokError
from ..settings.recipes import MEMTOK_LEARNED, parse_recipe

SEMANTIC_SHARE = 0.5
NETS_READ_CODES = {"pooled-mlp": False, "attention": True}  # `memtok.start.start_nets.NETS`' kinds (a test pins them)


@dataclass(frozen=True)
class TrainConfig:
    net: str = "pooled-mlp"  # a kind of `NETS_READ_CODES`: the one that measured best (docs/performance.md)
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    width: int = 512  # the network's hidden width: ~1.5M parameters on a 576-wide model
    min_tokens: int = 8
    max_tokens: int = 40  # the default encode's segments hold at most 32 text tokens
    seed: int = 0
    save_every: int = 25
    eval_every: int = 250
    held_out: int = 96  # held-out pieces scored at each evaluation
    semantic_share: float = SEMANTIC_SHARE  # batches with a code fixed in the semantic subspace (a network that reads codes)
    bf16: bool = False  # the frozen model's passes under bfloat16 autocast (on a GPU)
    unroll: int = 0  # the loss after this many of the encode's steps from the guess; 0: the guess's own
    recipe: str = MEMTOK_LEARNED.name  # the encode whose steps are unrolled (a recipe spec)
    init_from: str | None = None  # a start file whose network this run begins from (warm start)

    def __post_init__(self) -> None:
        if not 1 <= self.min_tokens <= self.max_tokens:
            raise MemtokError(f"pieces of {self.min_tokens} to {self.max_tokens} tokens: no such length")
        if self.net not in NETS_READ_CODES:
            raise MemtokError(f"unknown start network {self.net!r}; choose one of {', '.join(NETS_READ_CODES)}")
        if not NETS_READ_CODES[self.net] and self.semantic_share != SEMANTIC_SHARE:
            raise MemtokError(f"a {self.net} start reads no code: semantic_share has no effect on it")
        if not 0 <= self.unroll <= 64:
            raise MemtokError(f"unroll {self.unroll}: the steps unrolled must be 0 to 64")
        parse_recipe(self.recipe)  # a recipe that does not parse is refused here, not at the first step
