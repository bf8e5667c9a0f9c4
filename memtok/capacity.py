"""`memtok capacity`: how many tokens K vectors hold, measured the way Kuratov et al. (2025) do.

For each K and each length L, the first L tokens of every text long enough are encoded with K
vectors, as token ids (a cut need not be text that tokenizes back the same way). Per (K, L): how
many come back exactly, the mean teacher-forced accuracy, and the gains over the model with no
memory: tokens (right argmaxes gained) and information (nats of cross-entropy removed). A K's
capacity is the largest L at which every text is exact (memtok's criterion) and the largest at
which mean accuracy is >= 0.99 (Kuratov's). Lengths are tried in ascending order; a K stops after
a length where no text is exact and accuracy is below 0.99.
By default the targets end with EOS, as everywhere in memtok (the memory must also say where the
text ends; after a cut mid-sentence that is the hardest token); with `eos=False` they are the L
tokens alone, Kuratov's setting. Resumable like `memtok eval`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import deque
from pathlib import Path

from .codec import MemoryCodec
from .encode import Job, show_steps
from .errors import MemtokError
from .files import atomic_write, lock_folder, sweep_temporaries
from .layout import Layout
from .progress import progress
from .recipes import Recipe, get_recipe
from .results import ResultsLog, pin_settings
from .score import score
from .sources import Source
from .verify import optimise_verified

KURATOV_ACCURACY = 0.99
_RUN_KEYS = ("model_fingerprint", "recipe", "template", "eos", "data_sha256", "data")


def run_capacity(codec: MemoryCodec, source: Source, out: str | Path, lengths: list[int], tokens: list[int],
                 recipe: str | Recipe, template: str = "{memory}", batch_size: int = 8, eos: bool = True,
                 max_steps: int | None = None, command: str = "", show_progress_bar: bool = True) -> dict:
    """Run every (K, length) cell not yet in `out/results.jsonl`; write summary.json, report.md, capacity.png."""
    out = Path(out)
    lm = codec.lm
    rec = get_recipe(recipe)
    if max_steps is not None:
        rec = rec.replace(max_steps=max_steps)
    run = {"model": lm.name, "model_fingerprint": lm.fingerprint, "recipe": rec.to_dict(), "template": template,
           "eos": eos, "data": source.name, "data_sha256": source.sha256, "n_texts": len(source.texts),
           "lengths": lengths, "tokens": tokens, "command": command}
    layouts = {k: Layout.build(lm, template, k, rec.bos) for k in sorted(tokens)}
    for k, layout in layouts.items():
        if layout.first_target + max(lengths) + 1 > lm.context_length:
            raise MemtokError(f"length {max(lengths)} with {k} memory tokens does not fit the context of "
                              f"{lm.name} ({lm.context_length})")
    with lock_folder(out):  # one run per folder: two would write the same cells twice
        pin_settings(out / "run.json", run, _RUN_KEYS)
        sweep_temporaries(out)
        log = ResultsLog(out / "results.jsonl", key="key")
        started, encoded = time.perf_counter(), 0
        token_ids = [lm.tokenize(t) for t in source.texts]
        for k, layout in layouts.items():
            for length in sorted(lengths):
                # the first `length` ids of each text that has them
                cut = {i: ids[:length] for i, ids in enumerate(token_ids) if len(ids) >= length}
                targets = {i: ids + [lm.eos_id] if eos else ids for i, ids in cut.items()}
                pending = [Job(i, targets[i], k) for i in cut if f"k{k}/l{length}/{i}" not in log.done]
                bar = progress(len(pending), f"K={k}, {length} tokens", "text", disable=not show_progress_bar or not pending)
                for enc, exact in optimise_verified(lm, layout, rec, deque(pending), batch_size, show_steps(bar)):
                    t = targets[enc.key]
                    bare, aided = score(lm, layout, t), score(lm, layout, t, enc.memory)
                    log.append({"key": f"k{k}/l{length}/{enc.key}", "k": k, "length": length, "index": enc.key,
                                "exact": exact,
                                "token_accuracy": enc.token_accuracy, "steps": enc.steps, "seconds": round(enc.seconds, 3),
                                "nats_unaided": bare.nats, "nats_memory": aided.nats, "correct_unaided": bare.correct,
                                "correct_memory": aided.correct, "wrong_memory": list(aided.wrong)})
                    bar.update(1)
                bar.close()
                encoded += len(pending)
                cell = _cell([r for r in log.records if r["k"] == k and r["length"] == length])
                if cell["n"] and cell["exact"] == 0 and cell["mean_token_accuracy"] < KURATOV_ACCURACY:
                    break  # longer texts will not do better with this K
        summary = summarise(log.records, tokens)
        summary.update(run=run, encoded_now=encoded, wall_seconds_now=round(time.perf_counter() - started, 1))
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, sort_keys=True)))
        from .plots import plot_capacity

        plot_capacity(summary, out / "capacity.png")
        atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(report(summary)))
    return summary


def _cell(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    mean = statistics.fmean
    return {"n": len(rows), "exact": sum(r["exact"] for r in rows),
            "mean_token_accuracy": round(mean(r["token_accuracy"] for r in rows), 4),
            "median_steps": statistics.median(r["steps"] for r in rows),
            "mean_nats_unaided": round(mean(r["nats_unaided"] for r in rows), 2),
            "mean_information_gain": round(mean(r["nats_unaided"] - r["nats_memory"] for r in rows), 2),
            "mean_token_gain": round(mean(r["correct_memory"] - r["correct_unaided"] for r in rows), 2)}


def summarise(records: list[dict], tokens: list[int]) -> dict:
    by_k = {}
    for k in sorted(tokens):
        cells = [{"length": length, **_cell([r for r in records if r["k"] == k and r["length"] == length])}
                 for length in sorted({r["length"] for r in records if r["k"] == k})]
        all_exact = [c["length"] for c in cells if c["exact"] == c["n"]]
        accurate = [c["length"] for c in cells if c["mean_token_accuracy"] >= KURATOV_ACCURACY]
        by_k[str(k)] = {"cells": cells, "capacity_exact": max(all_exact, default=0),
                        "capacity_accuracy_99": max(accurate, default=0)}
    return {"by_tokens": by_k}


def shown(capacity: int, cells: list[dict]) -> str:
    """A capacity as text: 0 means no length that was run qualified, so it lies below the shortest."""
    return str(capacity) if capacity else f"< {cells[0]['length']}" if cells else "not run"


def report(summary: dict) -> str:
    run = summary["run"]
    lines = [f"# memtok capacity: {Path(run['data']).name}", "",
             f"- model: `{run['model']}` (fingerprint `{run['model_fingerprint'][:16]}`)",
             f"- recipe: `{run['recipe']['name']}` ({json.dumps(run['recipe'], sort_keys=True)})",
             (f"- data: `{run['data']}` (sha256 `{run['data_sha256']}`), {run['n_texts']} texts; "
             f"lengths {run['lengths']}, K {run['tokens']}; targets {'end with EOS' if run['eos'] else 'without EOS'}"),
             f"- command: `{run['command']}`", "",
             "| K | capacity (all exact) | capacity (mean accuracy >= 0.99) |", "|---|---|---|"]
    for k, s in summary["by_tokens"].items():
        lines.append(f"| {k} | {shown(s['capacity_exact'], s['cells'])} | {shown(s['capacity_accuracy_99'], s['cells'])} |")
    lines += ["", ("| K | length | texts | exact | mean accuracy | median steps | unaided nats | "
              "information gain (nats) | token gain |"), "|---|---|---|---|---|---|---|---|---|"]
    for k, s in summary["by_tokens"].items():
        for c in s["cells"]:
            lines.append(f"| {k} | {c['length']} | {c['n']} | {c['exact']} | {c['mean_token_accuracy']:.4f} | "
                         f"{c['median_steps']} | {c['mean_nats_unaided']} | {c['mean_information_gain']} | "
                         f"{c['mean_token_gain']} |")
    lines += ["", ("Length counts text tokens (with EOS, accuracy and gains count it as one more target). Information "
              "gain: unaided cross-entropy minus cross-entropy with the memory; token gain: right argmaxes "
              "with the memory minus without. A K stops after a length where no text is exact and mean "
              "accuracy is below 0.99."), "", "![capacity](capacity.png)", ""]
    return "\n".join(lines)
