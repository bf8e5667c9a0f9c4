"""Which tokens do an eval run's memories miss? For each text that is not exact (or every text,
with --all), score its saved memory teacher-forced and list the target positions whose argmax is
wrong, with the tokens there: whether a recipe fails on the first token, on the final EOS, or all
over is what tells a layout problem from a capacity one; the exact prefix (the tokens before the
first wrong one) is what greedy decoding gives back before it leaves the text.

    python bench/wrong_positions.py EVAL_DIR [--column chunk] [--all]

Reads the texts from the data file named in EVAL_DIR/run.json (paths relative to where the run
was started) and refuses any text whose hash is not the one its memory was made from.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from memtok import Memory, MemoryCodec
from memtok.decode.score import score
from memtok.format.header import sha256_text
from memtok.runs.evaluate import memory_file
from memtok.runs.sources import read_source

SHOWN = 20  # wrong positions listed per text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--column", default=None)
    ap.add_argument("--all", action="store_true", help="exact texts too")
    args = ap.parse_args()
    run = json.loads((args.path / "run.json").read_text())
    source = read_source(run["data"], args.column)
    rows = [json.loads(line) for line in (args.path / "results.jsonl").read_text().splitlines()]
    codec = MemoryCodec.from_pretrained(run["model"])
    lm = codec.lm
    where = Counter()
    prefixes: list[int] = []
    gains: list[int] = []
    for r in sorted(rows, key=lambda r: r["index"]):
        if (r["exact"] and not args.all) or r.get("failed"):  # a failed row has no memory
            continue
        mem = Memory.load(args.path / "memories" / memory_file(r["index"]))
        mem.check_model(lm.fingerprint, lm.name)
        text = source.texts[r["index"]]
        if sha256_text(text) != mem.text_sha256:
            raise SystemExit(f"text {r['index']} of {run['data']} is not the one its memory was made from")
        if len(mem.segments) > 1:
            raise SystemExit(f"text {r['index']} was cut into segments: positions are per segment, not shown here")
        targets = codec.target_ids(text)
        layout = mem.layout
        s = score(lm, layout, targets, mem.vectors)
        unaided = score(lm, layout, targets).correct  # the same layout with no memory: the model alone
        gains.append(s.correct - unaided)
        last = len(targets) - 1
        where.update("first" if p == 0 else "EOS" if p == last else "inside" for p in s.wrong)
        shown = ", ".join(f"{p}:{'EOS' if p == last else repr(lm.detokenize([targets[p]]))}" for p in s.wrong[:SHOWN])
        if len(s.wrong) > SHOWN:
            shown += f", ... ({len(s.wrong) - SHOWN} more)"
        # greedy decoding follows the text up to the first wrong argmax: the exact prefix it gives back
        prefixes.append(s.wrong[0] if s.wrong else len(targets))
        late = sum(p >= len(targets) / 2 for p in s.wrong)
        print(f"text {r['index']}: {s.correct}/{len(targets)} right ({unaided} with no memory), exact prefix {prefixes[-1]} tokens, "
              f"{len(s.wrong) - late} wrong in the first half and {late} in the second; wrong at {shown or 'none'}")
    print(f"wrong positions: {where['first']} first token, {where['inside']} inside, {where['EOS']} final EOS")
    if prefixes:
        print(f"exact prefix: median {statistics.median(prefixes)} tokens ({min(prefixes)}-{max(prefixes)}); "
              f"token gain over no memory: median {statistics.median(gains)} ({min(gains)}-{max(gains)})")


if __name__ == "__main__":
    main()
