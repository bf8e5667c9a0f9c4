"""Is a memory exact? Greedy decoding, many memories at a time, conclusive by margin.

Decoding one memory reads every weight of the model once per token, so verifying texts one at a
time cost ~1.4 s per 25-token text on two CPU cores, the same again for each text of a batch.
Decoding the memories of a batch together reads the weights once per token for all of them.

A batched matrix product is not bit for bit the single one that `memtok decode` runs (on
SmolLM2-135M on a 2-core CPU, logits differ by up to 7.3e-4 between batch sizes 1 and 8-64, at 1
and 2 threads: `bench/batched_vs_single.py`, figures in docs/trust.md). So a batched verdict
stands only where every greedy choice up to the first one that departs from the targets (all of
them, for an exact memory) won by at least `SAFE_MARGIN` logits, far beyond such differences: the
single decoding must then make the same choices. Any other memory is decoded alone, and so is
every memory of a quantised model (8-bit weights choose their 16-bit columns from the whole batch:
of 4 memories verified in a batch with 8-bit weights, one did not decode alone,
`bench/model_dtypes.py`). Either way a
decoding stops at the first wrong choice: it settles the verdict, and a memory that fails early
costs a few tokens, not the text's length.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from .greedy import SAFE_MARGIN, greedy_batch
from .layout import Layout
from .model import FrozenLM


def verify(lm: FrozenLM, layout: Layout, vectors: list[torch.Tensor], targets: list[list[int]]) -> list[bool]:
    """For each memory's vectors [K, d] (K may differ between them): does greedy decoding give exactly its
    targets?"""
    verdicts: list[bool | None] = [None] * len(vectors)
    by_k: dict[int, list[int]] = defaultdict(list)
    for i, m in enumerate(vectors):
        by_k[len(m)].append(i)
    for k, rows in by_k.items():
        lay = layout.with_k(k)
        if len(rows) > 1 and not lm.quantised:  # a quantised model's batch moves logits beyond any margin
            longest = max(len(targets[i]) for i in rows)
            stacked = torch.stack([vectors[i] for i in rows])
            ids, margins = greedy_batch(lm, lay, stacked, longest, [targets[i] for i in rows])
            for j, i in enumerate(rows):
                # shorter than the targets where this row ended early, at a wrong choice
                got = ids[j, :len(targets[i])]
                wrong = (got != torch.tensor(targets[i][:len(got)])).nonzero()
                judged = int(wrong[0]) + 1 if len(wrong) else len(got)
                if margins[j, :judged].min() >= SAFE_MARGIN:
                    verdicts[i] = not len(wrong)
        for i in rows:
            if verdicts[i] is None:
                verdicts[i] = decoded_alone(lm, lay, vectors[i], targets[i])
    return verdicts


def decoded_alone(lm: FrozenLM, layout: Layout, vectors: torch.Tensor, targets: list[int]) -> bool:
    """`memtok decode`'s verdict: its very computation, one row, stopped at the first wrong choice."""
    ids, _ = greedy_batch(lm, layout, vectors[None], len(targets), [targets])
    return ids[0].tolist() == targets
