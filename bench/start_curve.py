"""The learned start's scaling curve: held-out start accuracy and default-encode steps against the
examples a start has seen, for each network, side by side in one run.

`memtok train-start` keeps a snapshot at 1k, 2k, 4k ... examples (`start-<examples>.safetensors`)
with its held-out figures (token accuracy and loss of the start alone, before any step). Each
snapshot of each folder given (and any start file given) then encodes the same texts with the
default plan and recipe, from that start:

    python bench/start_curve.py runs/start-attention runs/start-pooled memtok/starts/smollm2-135m.safetensors \\
        --limit 10 --json docs/results/bench/start-curve.json

`--rows 20:40` encodes those rows instead: the default recipe's rate was chosen on the first 20.
`--set dev` encodes `--limit` held-out pieces of the training text (`memtok.training.texts`: whole
documents no start trained on), each in one vector: where starts are chosen, away from the
evaluation sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

from common import Passes, add_model_options, paper_files, report, row, run_ids

from memtok import MemoryCodec
from memtok.runs.sources import read_rows, read_source
from memtok.settings.recipes import MEMTOK_LEARNED
from memtok.start.start import LearnedStart
from memtok.training.text_sources import TEXT_SOURCES
from memtok.training.texts import training_pieces


def snapshots(where: str) -> list[Path]:
    """A folder's snapshots by examples seen, or the one start file named."""
    path = Path(where)
    if path.is_file():
        return [path]
    return sorted(path.glob("start-*.safetensors"), key=lambda p: int(p.stem.split("-")[1]))


def encoded(codec: MemoryCodec, start: LearnedStart, texts: list) -> dict:
    """The default encode of texts (strings), or of token-id targets each in one vector, from `start`."""
    if texts and isinstance(texts[0], list):
        return run_ids(codec, texts, MEMTOK_LEARNED.name, start=start)
    resolved = dataclasses.replace(codec.resolve(), start=start)
    passes, began = Passes(), time.perf_counter()
    mems = codec.encode(texts, resolved, show_progress_bar=True, on_step=passes)
    return row([m.exact for m in mems], [m.steps for m in mems], time.perf_counter() - began, passes, start.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("starts", nargs="+", help="training folders (their snapshots) or start files")
    ap.add_argument("--set", default="r100", choices=("r100", "r1000", "chunks", "dev"))
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--rows", default=None, help="rows START:END of the set instead of its first --limit, e.g. 20:40 "
                                                 "(rows a recipe was not tuned on)")
    ap.add_argument("--json", default=None)
    add_model_options(ap, data=True)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    if args.set == "dev":
        held = training_pieces(codec.lm, list(TEXT_SOURCES), {}, (8, 40)).held
        targets = [p + [codec.lm.eos_id] for p in random.Random(0).sample(held, args.limit)]
    else:
        data = paper_files(args.data_dir)[args.set]
        texts = read_rows(read_source(data).texts, args.rows) if args.rows else read_source(data, limit=args.limit).texts
    rows = []
    for where in args.starts:
        for path in snapshots(where):
            start = LearnedStart.load(path)
            start.net.to(codec.lm.device)
            info = start.info
            figures = info.get("held_out", {}).get("learned", {})
            examples = info.get("examples") or info.get("step", 0) * info.get("config", {}).get("batch_size", 0)
            rows.append({"file": path.name, "net": start.net.kind, "examples": examples,
                         "examples in all": info.get("examples_in_all", examples),  # a warm start's before these
                         "unroll": info.get("config", {}).get("unroll", 0),
                         "held-out accuracy": figures.get("token_accuracy"), "held-out loss": figures.get("loss"),
                         **encoded(codec, start, targets if args.set == "dev" else texts)})
            print(rows[-1], flush=True)
    if not rows:
        raise SystemExit(f"no start file in {', '.join(args.starts)}")
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
