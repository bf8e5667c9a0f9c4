"""Exact rate and steps at K = 1 per language, on each model, from real text that ships here.

Texts: chatterbot-corpus's dialogues (`pip install 'memtok[train]'`), per language: consecutive
lines of one file joined until they reach `--chars` characters (the paper's short chunks are ~100;
no text over twice that),
the first such text of each file in turn until `--per-language` texts. The same characters are
more tokens in some scripts than in others, and the table says how many.

All languages' texts are one CSV (`--out`/data/languages.csv, a `language` column beside `chunk`)
and each model one `eval` folder under `--out`, so every language shares the model's batches (a
language's few texts alone would keep the batch mostly empty) and the run resumes where it
stopped: run the same command again.

    python bench/languages.py --models smollm2-135m,gemma3-270m --per-language 3 --max-steps 1000 --out runs/languages \\
        --json docs/results/bench/languages.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import signal
import statistics
from pathlib import Path

from common import report

from memtok import EncodeConfig, MemoryCodec
from memtok.runs.evaluate import run_eval
from memtok.runs.sources import read_source
from memtok.training.text_sources import chatterbot_files

LANGUAGES = "english,spanish,german,french,italian,portuguese,russian,chinese,japanese,hindi"


def texts_of(language: str, chars: int, n: int) -> list[str]:
    """Up to `n` texts of at least `chars` characters, one from each file in turn."""
    import yaml

    per_file = []
    for path in chatterbot_files(language):
        texts, current = [], ""
        for line in (str(ln).strip() for turn in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]
                     for ln in turn):
            current = f"{current} {line}".strip()
            if len(current) >= chars:
                if len(current) <= 2 * chars:  # not one long monologue
                    texts.append(current)
                current = ""
        per_file.append(texts)
    picked = [texts[i] for i in range(max(map(len, per_file), default=0)) for texts in per_file if i < len(texts)]
    return picked[:n]


def write_csv(path: Path, texts: dict[str, list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["language", "chunk"])
        w.writeheader()
        w.writerows({"language": language, "chunk": t} for language, ts in texts.items() for t in ts)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,gemma3-270m")
    ap.add_argument("--languages", default=LANGUAGES, help="chatterbot-corpus folder names")
    ap.add_argument("--per-language", type=int, default=5)
    ap.add_argument("--chars", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=None, help="the recipe's (2000) unless given")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--out", default="runs/languages")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as `memtok eval`: a kill saves the texts in flight
    out = Path(args.out)
    texts = {}
    for language in args.languages.split(","):
        texts[language] = texts_of(language, args.chars, args.per_language)
        if not texts[language]:
            raise SystemExit(f"no {language} text: is chatterbot-corpus installed (pip install 'memtok[train]')?")
    path = write_csv(out / "data" / "languages.csv", texts)
    language_of = [language for language, ts in texts.items() for _ in ts]
    rows = []
    for model in args.models.split(","):
        codec = MemoryCodec.from_pretrained(model)
        config = EncodeConfig(k=1, batch_size=args.batch_size, max_steps=args.max_steps)
        folder = out / Path(model).name  # a model's name, or a folder's last part
        same = shlex.join(["memtok", "eval", str(path), "-k", "1", "--batch-size", str(args.batch_size),
                           *(["--max-steps", str(args.max_steps)] if args.max_steps else []),
                           "--model", model, "--out", str(folder)])  # what this model's run is, as one command
        run_eval(codec, read_source(str(path)), folder, config, command=same)
        results = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        for language in texts:
            done = [r for r in results if language_of[r["index"]] == language and not r.get("failed")]
            if not done:
                continue
            steps = [r["steps"] for r in done]
            rows.append({"model": model, "language": language, "texts": len(done),
                         "median tokens": statistics.median(r["tokens"] for r in done),
                         "exact": sum(r["exact"] for r in done),
                         "mean token accuracy": round(statistics.fmean(r["token_accuracy"] for r in done), 4),
                         "median steps": statistics.median(steps), "max steps": max(steps),
                         "seconds": round(sum(r["seconds"] for r in done), 1)})
    report(rows, {"model": lambda r: r["model"], "language": lambda r: r["language"],
                  "median tokens": lambda r: r["median tokens"],
                  "exact": lambda r: f"{r['exact']}/{r['texts']}",
                  "mean token accuracy": lambda r: r["mean token accuracy"],
                  "median steps (max)": lambda r: f"{r['median steps']} ({r['max steps']})",
                  "seconds, summed share": lambda r: r["seconds"]}, args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("languages: stopped; the texts in flight are saved, and the same command goes on from them") from None
