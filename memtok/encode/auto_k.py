"""`k="auto"`: the smallest number of vectors that makes a text exact, without paying for
every failed K in full.

A text's need is predicted from its unaided cross-entropy (the nats the vectors must remove) over
the nats one vector holds. A try at K gets a quarter of the step budget. When it fails, the next
try adds the vectors the cross-entropy it left calls for (at least one). When it passes at K > 1
and K - 1 has not been tried, K - 1 is tried: only a failure at K - 1 shows K is the smallest.
Every text that fails at K - 1 and passes at K shows where one vector's capacity lies, and the
estimate follows those texts.

What a failed try learned is reused as a measure (the cross-entropy it left, the capacity
estimate), not as a starting point: on the tiny test model, all 8 texts, a new try started from
the failed try's vectors (new ones added before them) took 744 steps in all and started afresh
416, the same 8/8 exact; with the new vectors after the old ones 1313 and 7/8.
"""

from __future__ import annotations

import math
import statistics

MAX_AUTO_K = 64
# nats one vector removes, per hidden dimension, before any text of the run has been seen, under the
# default recipe with a try's quarter of the step budget. On SmolLM2-135M (d = 576, so 259 nats):
# one vector made the first 64 tokens of each of the first 10 rows of raschka_chunks_1000 exact,
# all 10 within 600 steps (median 142, p90 290; docs/capacity.md); with EOS those tokens hold
# 280.27 nats unaided on average (0.49 per dimension; docs/results/capacity-smollm2-r1000-k1), so
# the prior errs towards fewer nats per vector, more vectors.
PRIOR_NATS_PER_DIM = 0.45


def max_auto_k(context_length: int) -> int:
    """The vectors may take at most a quarter of the context."""
    return min(MAX_AUTO_K, context_length // 4)


class KPlanner:
    def __init__(self, hidden_size: int, max_steps: int, max_k: int = MAX_AUTO_K) -> None:
        self.prior = PRIOR_NATS_PER_DIM * hidden_size
        self.max_steps = max_steps
        self.max_k = max_k
        self.boundaries: list[float] = []  # nats per vector of texts that failed at K - 1 and passed at K

    @property
    def nats_per_vector(self) -> float:
        return statistics.median(self.boundaries) if self.boundaries else self.prior

    def first(self, nats: float) -> int:
        """A central guess, not a safe one: a try below the need is what proves K is the smallest."""
        return self._clamp(round(nats / self.nats_per_vector))

    def next(self, k: int, remaining_nats: float) -> int:
        """K for the try after a failure at `k` that left `remaining_nats` of cross-entropy."""
        return self._clamp(k + max(1, math.floor(remaining_nats / self.nats_per_vector)))

    def steps(self, k: int) -> int:
        """A try below the largest K gets a quarter of the budget; the last one gets all of it."""
        return self.max_steps if k >= self.max_k else max(1, self.max_steps // 4)

    def decide(self, outcomes: dict[int, bool], k: int, remaining_nats: float) -> int | None:
        """K of the next try after the try at `k` (its outcome in `outcomes`), or None when settled."""
        passed = [j for j, ok in outcomes.items() if ok]
        if passed:
            best = min(passed)
            return best - 1 if best > 1 and best - 1 not in outcomes else None
        return self.next(k, remaining_nats) if k < self.max_k else None

    def learn(self, nats: float, outcomes: dict[int, bool]) -> None:
        passed = [j for j, ok in outcomes.items() if ok]
        if passed and outcomes.get(min(passed) - 1) is False:
            self.boundaries.append(nats / (min(passed) - 0.5))

    def _clamp(self, k: int) -> int:
        return min(max(1, k), self.max_k)
