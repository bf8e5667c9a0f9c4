"""How a text is cut into segments and how many vectors each segment gets, from the capacity
measured per vector, so that no optimisation starts that cannot end exact.

Three ways to choose K (`EncodeConfig.k`):
- `"plan"` (the default): segments of the length one vector holds cheaply, one vector each; a
  segment that does not come out exact is tried again with one more vector, at most twice. `favour="steps"`
  makes segments short (fast, more vectors), `favour="bytes"` long (fewer vectors, more steps).
- `"auto"`: the fewest vectors per segment, by search (`memtok.encode.auto_k`).
- a number: that many vectors per segment, the paper's protocol; a segment is never longer than
  those vectors can hold at all.

The figures are SmolLM2-135M's under the default recipe. A wider model holds more per vector
(Kuratov et al.: 80 tokens for Pythia-160M, 1568 for Llama-3.1-8B), so there the plan's segments
are short for the model: still exact and fast, with more vectors than it needs
(`segment_tokens` sets the length). What a fixed K may be given at all scales with the width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from ..decode.score import score
from ..errors import MemtokError
from ..model.dtypes import STORAGE
from ..model.layout import Layout
from ..model.model import FrozenLM
from ..settings.config import EncodeConfig
from .auto_k import KPlanner, max_auto_k
from .jobs import Optimised

# Text tokens per vector for each thing to favour, on SmolLM2-135M. steps: 32. The default on the
# first 20 rows of each of the paper's long files cut them into 412 such segments, and every one
# came out exact with one vector on the first try (docs/results); it keeps a sentence whole.
# Shorter segments are faster still, with more vectors: on the first 3 rows of
# raschka_chunks_1000, 16-token segments took 0.74x the wall time of 32-token ones with twice the
# vectors, and 32-token segments with two vectors each 1.44x (bench/segments.py). bytes: 96, which
# one vector held exactly on all 10 texts tried without EOS (158-994 steps), and on 9 of 10 with it
# (docs/capacity.md).
TOKENS_PER_VECTOR = {"steps": 32, "bytes": 96}
# The most text tokens one vector is given at all, per hidden dimension: 288 on SmolLM2-135M, more
# than any text one of its vectors has been seen to hold (200 of a chunk's 201 targets, EOS missed).
HOLD_PER_DIM = 0.5


def most_tokens(hidden_size: int, k: int) -> int:
    """Text tokens that `k` vectors may be given: beyond this no optimisation can be expected to end."""
    return max(1, math.floor(HOLD_PER_DIM * hidden_size)) * k


@dataclass(frozen=True)
class Try:
    """The next optimisation of a segment: K and its step budget (None: the recipe's)."""

    k: int
    max_steps: int | None = None


@dataclass
class Segment:
    """A text, or one segment of it, on its way through the optimiser, with every try it had."""

    text_index: int
    text: str
    targets: list[int]  # ids + EOS
    tried: list[int] = field(default_factory=list)  # K of each try, in order
    outcomes: dict[int, bool] = field(default_factory=dict)  # K -> exact
    steps: int = 0
    restarts: int = 0  # restarts after a stall, over all its tries (`Recipe.restart_after`)
    seconds: float = 0.0  # its share of the run's wall time (`Optimised.seconds`)
    began: float | None = None  # its first try's first pass, and its last try's last (`Optimised.began`, `.ended`)
    ended: float | None = None
    result: Optimised | None = None  # the smallest exact try, else the latest
    exact: bool = False

    def add_try(self, result: Optimised, exact: bool) -> None:
        k = len(result.vectors)
        self.tried.append(k)
        self.outcomes[k] = exact
        self.steps += result.steps
        self.restarts += result.restarts
        self.seconds += result.seconds
        self.began = result.began if self.began is None else min(self.began, result.began)
        self.ended = result.ended if self.ended is None else max(self.ended, result.ended)
        if not self.exact or (exact and k < len(self.result.vectors)):
            self.result, self.exact = result, exact


@dataclass(frozen=True)
class FixedK:
    """K vectors per segment, as asked; segments no longer than K vectors can hold at all."""

    k: int
    hidden_size: int

    def segment_limit(self) -> int:
        return most_tokens(self.hidden_size, self.k)

    def for_run(self) -> FixedK:
        return self

    def first(self, segment: Segment) -> Try:
        return Try(self.k)

    def next(self, segment: Segment, loss: float) -> Try | None:
        return None

    def describe(self, longest: int) -> str:
        held = TOKENS_PER_VECTOR["bytes"] * self.k
        vectors = f"{self.k} vector{'s' * (self.k > 1)}"
        warn = f"; {longest} tokens is beyond the {held} that {vectors} held here, it may not come out exact"
        return f"{vectors} per segment" + (warn if longest > held else "")


@dataclass(frozen=True)
class PlannedK:
    """One vector per `per_vector` text tokens (`TOKENS_PER_VECTOR`, or a compact dtype's); after a
    failed try, one more vector, at most `RETRIES` times, the last try with the whole step budget."""

    per_vector: int
    favour: str  # what `per_vector` was planned for
    max_steps: int
    max_k: int
    RETRIES: ClassVar[int] = 2

    def segment_limit(self) -> int:
        return self.per_vector

    def for_run(self) -> PlannedK:
        return self

    def _try(self, k: int, first: int) -> Try:
        last = k >= min(self.max_k, first + self.RETRIES)
        return Try(k, self.max_steps if last else max(1, self.max_steps // 4))

    def first(self, segment: Segment) -> Try:
        k = min(self.max_k, max(1, math.ceil((len(segment.targets) - 1) / self.per_vector)))
        return self._try(k, k)

    def next(self, segment: Segment, loss: float) -> Try | None:
        k, first = segment.tried[-1] + 1, segment.tried[0]
        if segment.exact or k > min(self.max_k, first + self.RETRIES):
            return None
        return self._try(k, first)

    def describe(self, longest: int) -> str:
        return f"one vector per {self.per_vector} tokens (planned for {self.favour})"


@dataclass(frozen=True)
class SmallestK:
    """`k="auto"`: the fewest vectors, found by search from the text's unaided cross-entropy."""

    lm: FrozenLM
    layout: Layout
    max_steps: int

    def segment_limit(self) -> int:
        return most_tokens(self.lm.hidden_size, self.layout.k)

    def for_run(self) -> KSearch:
        """The search of one encode call, which learns from each text how much one vector holds."""
        return KSearch(self, KPlanner(self.lm.hidden_size, self.max_steps, self.layout.k))

    def describe(self, longest: int) -> str:
        return "the fewest vectors per segment, by search"


class KSearch:
    """`SmallestK` within one call: each segment's unaided nats, and what the texts so far have taught."""

    def __init__(self, policy: SmallestK, planner: KPlanner) -> None:
        self.policy, self.planner = policy, planner
        self.nats: dict[int, float] = {}  # id(segment) -> its unaided cross-entropy

    def first(self, segment: Segment) -> Try:
        nats = self.nats[id(segment)] = score(self.policy.lm, self.policy.layout, segment.targets).nats
        k = self.planner.first(nats)
        return Try(k, self.planner.steps(k))

    def next(self, segment: Segment, loss: float) -> Try | None:
        k = self.planner.decide(segment.outcomes, segment.tried[-1], loss * len(segment.targets))
        if k is None:
            self.planner.learn(self.nats[id(segment)], segment.outcomes)
            return None
        return Try(k, self.planner.steps(k))

    def describe(self, longest: int) -> str:
        return self.policy.describe(longest)


class SegmentPlan(NamedTuple):
    """How an encode's texts are cut and what vectors their segments get."""

    layout: Layout  # with the config's K, or the most a plan or a search may try
    policy: FixedK | PlannedK | SmallestK
    room: int  # text tokens a segment may hold beside the layout's vectors and EOS, in the context and one pass
    limit: int  # text tokens segments are cut to: the room, and what was asked or the policy allows


def config_layout(lm: FrozenLM, config: EncodeConfig, k: int | None = None) -> Layout:
    """The layout of `k` vectors (default: the config's K, or the most a plan or a search may try)
    around the config's prompt; `config.recipe` decided."""
    if k is None:
        k = config.k if config.fixed else max_auto_k(lm.context_length)
    return Layout.build(lm, config.template, k, config.recipe.bos, config.chat)


def segment_plan(lm: FrozenLM, config: EncodeConfig) -> SegmentPlan:
    """The plan of an encode with `config` (recipe decided) on `lm`; refused with one line when the
    vectors leave no room for text."""
    layout = config_layout(lm, config)
    first, budget = layout.first_target, config.max_batch_tokens
    if first + 2 > budget:
        raise MemtokError(f"{layout.k} memory vectors leave no room for text in {budget} positions per pass "
                          "(max_batch_tokens)")
    if lm.context_length - first - 1 < 1:
        raise MemtokError(f"{layout.k} memory vectors leave no room for text in the context of {lm.name} "
                          f"({lm.context_length})")
    room = min(lm.context_length, budget) - first - 1
    steps = config.recipe.max_steps
    if config.fixed:
        policy = FixedK(config.k, lm.hidden_size)
    elif config.compact:
        policy = PlannedK(STORAGE[config.storage].compact_tokens, "compact", steps, layout.k)
    elif config.auto:
        policy = SmallestK(lm, layout, steps)
    else:
        policy = PlannedK(TOKENS_PER_VECTOR[config.favour], config.favour, steps, layout.k)
    limit = min(room, policy.segment_limit() if config.segment_tokens is None else config.segment_tokens)
    return SegmentPlan(layout, policy, room, limit)
