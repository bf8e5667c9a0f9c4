"""The learned start against the mean start, side by side in one process on the same texts.

For each set of texts and each recipe: exact count, median, p90, largest and total steps, wall time
of the encode call, and the start's own token accuracy before any step (step 0 of each text's
curve). What the wall time is made of comes with it: the forward-and-backward passes, seconds per
pass, the segments tried again with one more vector (their failed tries' steps are in the
text's steps), and those that started again after a stall (`restart_after` in a recipe). The
learned start must be installed for the model (memtok/starts/ or MEMTOK_STARTS).

    python bench/learned_start.py --sets r100,r1000,chunks --limit 20 \\
        --recipes memtok:init=mean,memtok:init=learned --json docs/results/bench/learned-start.json

`--semantic minilm` runs each recipe twice, as plain memories and as semantic memories taught by
that teacher (`memtok.teachers`), side by side: what a semantic memory costs in steps.

    python bench/learned_start.py --sets r100,r1000-l64,r1000-l96 --limit 10 --recipes memtok-learned \\
        --semantic minilm --json docs/results/bench/semantic-steps.json

Sets: r100 (raschka_chunks_100, K=1, the paper's protocol), r1000 and chunks (the default encode,
32-token segments), r1000-compact (--compact), and any of r100, r1000 or chunks with -lN (each
text's first N tokens plus EOS in one vector, `memtok capacity`'s cell: r1000-l64, chunks-l32).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

from rows import report

from memtok import MemoryCodec
from memtok.runs.sources import read_source

DATA = "../shared/data/paper"
FILES = {"r100": f"{DATA}/raschka_chunks_100.csv", "r1000": f"{DATA}/raschka_chunks_1000.csv",
         "chunks": f"{DATA}/chunks.csv"}
SETS = {
    "r100": (FILES["r100"], {"k": 1}),
    "r1000": (FILES["r1000"], {}),
    "chunks": (FILES["chunks"], {}),
    "r1000-compact": (FILES["r1000"], {"compact": True}),
}


def p90(xs: list[int]) -> int:
    return sorted(xs)[max(0, round(0.9 * len(xs)) - 1)]


class Passes:
    """An on_step callback that counts the passes and keeps each text's token accuracy at step 0,
    the start's own."""

    def __init__(self) -> None:
        self.count, self.starts = 0, []

    def __call__(self, info) -> None:
        self.count += 1
        self.starts.extend(p.accuracy for p in info.texts if p.step == 0)


def row(exact: list[bool], steps: list[int], wall: float, passes: Passes, start: str, retried: int = 0,
        restarted: int = 0) -> dict:
    return {"exact": f"{sum(exact)}/{len(exact)}", "median steps": statistics.median(steps),
            "p90 steps": p90(steps), "max steps": max(steps), "total steps": sum(steps),
            "wall seconds": round(wall, 1), "passes": passes.count,
            "seconds per pass": round(wall / max(1, passes.count), 3), "retried segments": retried,
            "restarted segments": restarted,
            "start accuracy": round(statistics.fmean(passes.starts), 4), "start": start}


def run_texts(codec: MemoryCodec, texts: list[str], recipe: str, semantic: str | None, options: dict) -> dict:
    passes = Passes()
    began = time.perf_counter()
    mems = codec.encode(texts, recipe=recipe, semantic=semantic, show_progress_bar=True, on_step=passes, **options)
    wall = time.perf_counter() - began
    retried = sum(len(s.get("tried", [])) > 1 for m in mems for s in m.segments)
    restarted = sum(s.get("restarts", 0) > 0 for m in mems for s in m.segments)
    return row([m.exact for m in mems], [m.steps for m in mems], wall, passes, mems[0].start, retried, restarted)


def cut(codec: MemoryCodec, texts: list[str], length: int) -> list[list[int]]:
    """The first `length` tokens of each text long enough, plus EOS (`memtok capacity`'s cell)."""
    return [ids[:length] + [codec.lm.eos_id] for ids in map(codec.lm.tokenize, texts) if len(ids) >= length]


def encode_ids(codec: MemoryCodec, targets: list[list[int]], recipe: str, semantic: str | None = None
               ) -> tuple[list, float, Passes]:
    """Each target in one vector: the (index, result, exact) of each, the wall time, the passes."""
    from contextlib import closing

    passes = Passes()
    began = time.perf_counter()
    settings = codec.resolve(k=1, recipe=recipe, semantic=semantic)
    with closing(codec.encode_ids(targets, settings, show_progress_bar=True, on_step=passes)) as it:
        results = list(it)
    return results, time.perf_counter() - began, passes


def run_ids(codec: MemoryCodec, targets: list[list[int]], recipe: str, semantic: str | None = None) -> dict:
    """Each target in one vector."""
    results, wall, passes = encode_ids(codec, targets, recipe, semantic)
    return row([e for _, _, e in results], [r.steps for _, r, _ in results], wall, passes,
               codec.resolve(k=1, recipe=recipe).start_name, restarted=sum(r.restarts > 0 for _, r, _ in results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="r100")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--recipes", default="memtok:init=mean,memtok:init=learned")
    ap.add_argument("--semantic", default=None, help="also each recipe's semantic memories with these teachers (a,b)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    rows, teachers = [], [None] + (args.semantic.split(",") if args.semantic else [])
    for name in args.sets.split(","):
        if "-l" in name:
            base, length = name.rsplit("-l", 1)
            targets = cut(codec, read_source(FILES[base], limit=args.limit).texts, int(length))
            run = partial(run_ids, codec, targets)
        else:
            data, options = SETS[name]
            texts = read_source(data, limit=args.limit).texts
            run = partial(run_texts, codec, texts, options=options)
        for recipe in args.recipes.split(","):
            for teacher in teachers:
                rows.append({"set": name, "recipe": recipe, "semantic": teacher or "plain", **run(recipe, teacher)})
                print(rows[-1], flush=True)
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
