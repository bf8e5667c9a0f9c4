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
that teacher (`memtok.start.teachers`), side by side: what a semantic memory costs in steps.

    python bench/learned_start.py --sets r100,r1000-l64,r1000-l96 --limit 10 --recipes memtok-learned \\
        --semantic minilm --json docs/results/bench/semantic-steps.json

Sets: r100 (raschka_chunks_100, K=1, the paper's protocol), r1000 and chunks (the default encode,
32-token segments), quotes (`--limit` quotations of 100-230 characters, half English, half Spanish,
from Debian's fortune packages, which no start trains on; the default encode), r1000-compact (--compact), and any of r100, r1000 or chunks with -lN (each
text's first N tokens plus EOS in one vector, `memtok capacity`'s cell: r1000-l64, chunks-l32).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from functools import partial
from itertools import product

from common import Passes, add_model_options, paper_files, quotations, report, row, run_ids

from memtok import MemoryCodec
from memtok.runs.sources import read_source
from memtok.settings.recipes import Init, get_recipe
from memtok.start.start import LearnedStart

SETS = {  # the paper's file (`common.paper_files`) and the encode's options
    "r100": ("r100", {"k": 1}),
    "r1000": ("r1000", {}),
    "chunks": ("chunks", {}),
    "r1000-compact": ("r1000", {"compact": True}),
    "quotes": ("quotes", {}),  # `common.quotations`: of another kind than any training text
}


def run_texts(codec: MemoryCodec, texts: list[str], recipe: str, semantic: str | None, start: LearnedStart | None,
              options: dict) -> dict:
    passes = Passes()
    began = time.perf_counter()
    resolved = codec.resolve(recipe=recipe, semantic=semantic, **options)
    if start is not None:
        resolved = dataclasses.replace(resolved, start=start)
    mems = codec.encode(texts, resolved, show_progress_bar=True, on_step=passes)
    wall = time.perf_counter() - began
    retried = sum(len(s.get("tried", [])) > 1 for m in mems for s in m.segments)
    restarted = sum(s.get("restarts", 0) > 0 for m in mems for s in m.segments)
    return row([m.exact for m in mems], [m.steps for m in mems], wall, passes, mems[0].start, retried, restarted)


def loaded(codec: MemoryCodec, path: str) -> LearnedStart:
    start = LearnedStart.load(path)
    start.net.to(codec.lm.device)
    return start


def cut(codec: MemoryCodec, texts: list[str], length: int) -> list[list[int]]:
    """The first `length` tokens of each text long enough, plus EOS (`memtok capacity`'s cell)."""
    return [ids[:length] + [codec.lm.eos_id] for ids in map(codec.lm.tokenize, texts) if len(ids) >= length]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="r100")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--recipes", default="memtok:init=mean,memtok:init=learned")
    ap.add_argument("--semantic", default=None, help="also each recipe's semantic memories with these teachers (a,b)")
    ap.add_argument("--json", default=None)
    add_model_options(ap, data=True)
    ap.add_argument("--starts", default=None, help="start files (a,b): each recipe that starts from a learned start "
                                                   "runs once from each (default: the installed start)")
    args = ap.parse_args()
    codec, files = MemoryCodec.from_pretrained(args.model), paper_files(args.data_dir)
    rows, teachers = [], [None] + (args.semantic.split(",") if args.semantic else [])
    starts = [None] if not args.starts else args.starts.split(",")
    for name in args.sets.split(","):
        if "-l" in name:
            base, length = name.rsplit("-l", 1)
            targets = cut(codec, read_source(files[base], limit=args.limit).texts, int(length))
            run = partial(run_ids, codec, targets)
        else:
            data, options = SETS[name]
            texts = quotations(args.limit) if data == "quotes" else read_source(files[data], limit=args.limit).texts
            run = partial(run_texts, codec, texts, options=options)
        for recipe in args.recipes.split(","):
            for teacher, path in product(teachers, starts if get_recipe(recipe).init is Init.LEARNED else [None]):
                start = None if path is None else loaded(codec, path)
                rows.append({"set": name, "recipe": recipe, "semantic": teacher or "plain",
                             "start file": path or "installed", **run(recipe, teacher, start=start)})
                print(rows[-1], flush=True)
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
