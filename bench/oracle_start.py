"""How good would a start have to be? Steps to exact from starts placed part of the way to a known solution.

A learned start is a guess at where a text's memory lies. This bench asks the question before any
network: encode the texts once from the mean start (the default), keep each text's exact vector v*,
then encode them again from `mean + a * (v* - mean)` for several fractions `a` (a = 1: the solution
itself). With the default recipe's factorisation the first pass already moves the start by its
random `z @ W.T` (`z_scale`), so a = 1 is not zero steps: it is the floor of what any start can
reach under that recipe. Also reported for each start: its token accuracy before any step, and for
the shipped learned start (if installed) how far it lies toward v* (its component along v* - mean,
as a fraction of |v* - mean|).

    python bench/oracle_start.py --limit 20 --fractions 0.5,0.75,0.9,1 \\
        --recipes memtok:init=learned,memtok:init=learned:z_scale=0 --json docs/results/bench/oracle-start-r100.json

Texts: the first `--limit` rows of raschka_chunks_100.csv, K=1 (the paper's protocol); the start
must be asked for as `init=learned`, which this bench points at the placed start.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from common import add_model_options, encode_ids, paper_files, report, row, run_ids

from memtok import MemoryCodec
from memtok.model.model import FrozenLM
from memtok.runs.sources import read_source
from memtok.start.start import find_start


@dataclass
class PlacedStart:
    """Stands in for a learned start: each text's start is a fixed fraction of the way to its solution."""

    solutions: dict[tuple[int, ...], torch.Tensor]  # text ids (no EOS) -> [1, d] exact vector
    fraction: float
    mean: torch.Tensor

    @property
    def name(self) -> str:
        return f"placed a={self.fraction}"

    def vectors(self, lm: FrozenLM, texts: list[list[int]], k: int = 1, codes: torch.Tensor | None = None
                ) -> torch.Tensor:
        """[B, k, d]: mean + fraction * (solution - mean), as `LearnedStart.vectors` gives its starts."""
        out = [self.mean + self.fraction * (self.solutions[tuple(t)][0] - self.mean) for t in texts]
        return torch.stack(out)[:, None].expand(-1, k, -1).to(lm.embedding_mean.dtype)


def solve(codec: MemoryCodec, targets: list[list[int]]) -> tuple[dict[tuple[int, ...], torch.Tensor], dict]:
    """Each target's exact vector from the default recipe (mean start; targets not made exact are
    left out), and that run's row."""
    results, wall, passes = encode_ids(codec, targets, "memtok")
    solutions = {tuple(r.targets[:-1]): r.vectors.float() for _, r, exact in results if exact}
    return solutions, row([e for _, _, e in results], [r.steps for _, r, _ in results], wall, passes, "mean")


def toward(start: torch.Tensor, solution: torch.Tensor, mean: torch.Tensor) -> float:
    """The start's component along (solution - mean), as a fraction of |solution - mean|."""
    way = (solution - mean).flatten()
    return float((start - mean).flatten() @ way / (way @ way))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--fractions", default="0.5,0.75,0.9,1")
    ap.add_argument("--recipes", default="memtok:init=learned")
    ap.add_argument("--json", default=None)
    add_model_options(ap, data=True)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    lm = codec.lm
    texts = read_source(paper_files(args.data_dir)["r100"], limit=args.limit).texts
    targets = [lm.tokenize(t) + [lm.eos_id] for t in texts]
    solutions, solved = solve(codec, targets)
    targets = [t for t in targets if tuple(t[:-1]) in solutions]
    mean = lm.embedding_mean.float()
    rows = [{"recipe": "memtok", "toward solution (median)": 0.0, **solved}]
    print(rows[-1], flush=True)
    shipped = find_start(lm)
    if shipped is not None:
        starts = shipped.vectors(lm, [t[:-1] for t in targets])[:, 0].float()
        parts = sorted(toward(s, solutions[tuple(t[:-1])][0], mean) for s, t in zip(starts, targets))
        rows.append({"start": shipped.name, "toward solution (median)": round(parts[len(parts) // 2], 4)})
        print(rows[-1], flush=True)
    for fraction in map(float, args.fractions.split(",")):
        placed = PlacedStart(solutions, fraction, mean)
        for recipe in args.recipes.split(","):
            rows.append({"recipe": recipe, "toward solution (median)": fraction,
                         **run_ids(codec, targets, recipe, start=placed)})
            print(rows[-1], flush=True)
    report(rows, {k: (lambda r, k=k: r.get(k, "")) for k in dict.fromkeys(k for r in rows for k in r)}, args)


if __name__ == "__main__":
    main()
