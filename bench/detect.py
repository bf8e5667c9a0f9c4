"""The detector (`memtok.analysis.detect`) on every stored memory beside every real token embedding,
and the snap defence: each memory vector replaced by its nearest token's, then decoded.

Negatives: every row of the vocabulary as the model's lookup gives it, and the same rows rounded
to bfloat16 and float16 (what a token's vector may have gone through on its way to a service).
Positives: every vector of every memory in the given run folders. The threshold comes from
rounding alone (`THRESHOLD`), so none of these memories picked it.

    python bench/detect.py docs/results/*/ --json docs/results/bench/detect.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from common import add_model_options, folder_memories, report, write_json

from memtok import Memory, MemoryCodec
from memtok.analysis.detect import THRESHOLD, nearest_rows, snapped
from memtok.runs.sources import read_source


def auc(negatives: list[float], positives: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counted half: the ROC curve's area (None without
    both kinds)."""
    if not negatives or not positives:
        return None
    scores = sorted([(s, 0) for s in negatives] + [(s, 1) for s in positives])
    ranks, i = [0.0] * len(scores), 0
    while i < len(scores):
        j = i
        while j < len(scores) and scores[j][0] == scores[i][0]:
            j += 1
        for m in range(i, j):
            ranks[m] = (i + j + 1) / 2
        i = j
    positive_ranks = sum(r for r, (_, label) in zip(ranks, scores) if label)
    n, p = len(negatives), len(positives)
    return (positive_ranks - p * (p + 1) / 2) / (n * p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="eval folders with memories/")
    ap.add_argument("--snap", nargs="*", default=[], help="folders whose memories are also decoded after snapping")
    ap.add_argument("--snap-limit", type=int, default=20, help="memories per folder decoded after snapping")
    ap.add_argument("--json", default=None)
    add_model_options(ap)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    lm = codec.lm
    rows_ = lm.vocabulary
    negatives = {}
    for name, dtype in (("token rows", None), ("token rows in bfloat16", torch.bfloat16),
                        ("token rows in float16", torch.float16)):
        vectors = rows_ if dtype is None else rows_.to(dtype).float()
        negatives[name] = nearest_rows(rows_, vectors)[1].tolist()
    table = [{"set": name, "vectors": len(d), "flagged": sum(x > THRESHOLD for x in d),
              "median distance": round(statistics.median(d), 6), "max distance": round(max(d), 6)}
             for name, d in negatives.items()]
    every_negative = [x for d in negatives.values() for x in d]
    every_positive = []
    for folder in map(Path, args.folders):
        mems = [(i, m) for i, m in folder_memories(folder).items() if m.model_fingerprint == lm.fingerprint]
        if not mems:
            continue
        texts = read_source(json.loads((folder / "run.json").read_text())["data"]).texts
        vectors = torch.cat([codec.inputs(m.vectors, m.storage_dtype) for _, m in mems])
        distance = nearest_rows(rows_, vectors)[1].tolist()
        every_positive += distance
        exact, accuracy = 0, []
        snap = mems[:args.snap_limit] if str(folder) in args.snap or folder.name in args.snap else []
        for i, m in snap:  # the defence: snap, decode, compare
            inputs = snapped(rows_, codec.inputs(m.vectors, m.storage_dtype))
            moved = Memory(**{**m.__dict__, "vectors": inputs.cpu(), "storage_dtype": "float32"})
            exact += codec.decode(moved, check=False) == texts[i]
            accuracy.append(_accuracy(codec, moved, texts[i]))
        table.append({"set": f"memories: {folder.name}", "vectors": len(distance),
                      "flagged": sum(x > THRESHOLD for x in distance),
                      "median distance": round(statistics.median(distance), 4), "max distance": round(max(distance), 4),
                      "min distance": round(min(distance), 4),
                      **({"snapped exact": f"{exact}/{len(snap)}", "snapped token accuracy":
                          "-" if None in accuracy else round(statistics.fmean(accuracy), 4)} if snap else {})})
    summary = {"threshold": THRESHOLD, "auc": auc(every_negative, every_positive),
               "false_alarms": sum(x > THRESHOLD for x in every_negative), "negatives": len(every_negative),
               "detected": sum(x > THRESHOLD for x in every_positive), "positives": len(every_positive)}
    report(table, {k: (lambda r, k=k: r.get(k, "-")) for k in ("set", "vectors", "flagged", "median distance",
               "min distance", "max distance", "snapped exact", "snapped token accuracy")}, args)
    print(json.dumps(summary))
    if args.json:
        write_json(args.json, {**json.loads(Path(args.json).read_text()), "summary": summary})


def _accuracy(codec: MemoryCodec, mem: Memory, text: str) -> float | None:
    """Teacher-forced token accuracy of the text from the (snapped) memory; None for a memory cut
    into segments (each segment is its piece's own tokenization, not a slice of the whole text's)."""
    from memtok.decode.score import score

    if len(mem.segments) > 1:
        return None
    targets = codec.lm.tokenize(text) + [codec.lm.eos_id]
    return score(codec.lm, mem.layout, targets, mem.vectors.to(codec.lm.device)).correct / len(targets)


if __name__ == "__main__":
    main()
