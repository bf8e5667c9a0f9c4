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
from contextlib import closing, nullcontext
from pathlib import Path

from ..codec import MemoryCodec
from ..decode.beam import beam_decode, departs
from ..decode.score import score
from ..encode.resolved import Resolved
from ..encode.steplog import StepLog
from ..errors import MemtokError
from ..settings.config import EncodeConfig
from .beam_summary import beam_summary, beam_table
from .folder import CHECKPOINT, FREE, STEPS, ResultsLog, run_folder, settings, with_pinned_recipe, write_outputs
from .migrate import command_for
from .plots import plot_capacity
from .sources import Source

KURATOV_ACCURACY = 0.99


def run_capacity(codec: MemoryCodec, source: Source, out: str | Path, lengths: list[int], ks: list[int],
                 config: EncodeConfig, eos: bool = True, command: str = "", show_progress_bar: bool = True,
                 log_steps: int | None = None, beams: list[int] = ()) -> dict:
    """Run every (K, length) cell not yet in `out/results.jsonl`; write summary.json, report.md, capacity.png
    (also for the texts finished when the run is interrupted by Ctrl-C or SIGTERM)."""
    out = Path(out)
    first = codec.resolve(with_pinned_recipe(config.replace(k=min(ks)), out / "run.json"))
    resolved = {k: first.with_k(codec.lm, k) for k in sorted(ks)}
    for k, each in resolved.items():
        if max(lengths) + eos > each.room + 1:
            raise MemtokError(f"length {max(lengths)} with {k} memory vectors does not fit the context of "
                              f"{codec.lm.name} ({codec.lm.context_length})")
    run = settings(codec.lm, first, source, command, k=sorted(ks), lengths=sorted(lengths), eos=eos)
    # more K or lengths extend a run: the cells already there are what they were
    with run_folder(out, run, key="key", free=(*FREE, "k", "lengths")) as log:
        began, before = time.perf_counter(), len(log.records)

        def write(interrupted: bool = False) -> dict:
            summary = summarise(log.records, ks)
            log.parts.keep()
            summary.update(run=run, encoded_now=len(log.records) - before, interrupted=interrupted,
                           wall_seconds_now=round(time.perf_counter() - began, 1),
                           wall_seconds=round(log.parts.total(), 1), parts=log.parts.number)
            write_outputs(out, summary, report(summary), lambda folder: plot_capacity(summary, folder / "capacity.png"))
            return summary

        try:
            token_ids = {source.first + i: codec.lm.tokenize(t) for i, t in enumerate(source.texts)}
            _run_cells(codec, resolved, log, token_ids, sorted(lengths), eos, show_progress_bar, log_steps, beams)
        except KeyboardInterrupt:
            log.reread()
            write(interrupted=True)
            raise
        return write()


def _run_cells(codec: MemoryCodec, resolved: dict[int, Resolved], log: ResultsLog, token_ids: dict[int, list[int]],
               lengths: list[int], eos: bool, show_progress_bar: bool, log_steps: int | None,
               beams: list[int]) -> None:
    """Every (K, length) cell in turn; a K stops after a length where no text is exact or accurate."""
    for k, each in resolved.items():
        for length in lengths:
            # the first `length` ids of each text that has them
            targets = {i: ids[:length] + [codec.lm.eos_id] * eos for i, ids in token_ids.items() if len(ids) >= length}
            _run_cell(codec, each, log, length, targets, show_progress_bar, log_steps, beams)
            cell = _cell([r for r in log.records if r["k"] == k and r["length"] == length])
            if cell["n"] and cell["exact"] == 0 and cell["mean_token_accuracy"] < KURATOV_ACCURACY:
                break  # longer texts will not do better with this K


def _run_cell(codec: MemoryCodec, resolved: Resolved, log: ResultsLog, length: int, targets: dict[int, list[int]],
              show_progress_bar: bool, log_steps: int | None, beams: list[int]) -> None:
    """The texts of one (K, length) cell not yet in the log, each scored with and without its memory."""
    config, k, layout = resolved.config, resolved.config.k, resolved.layout  # the cell's: K vectors
    rows = [i for i in targets if f"k{k}/l{length}/{i}" not in log.done]
    steps = StepLog(log.path.parent / STEPS, log_steps, lambda key: {"key": f"k{k}/l{length}/{rows[key['text']]}"}) \
        if log_steps else None
    tries = codec.encode_ids([targets[i] for i in rows], resolved, show_progress_bar, desc=f"K={k}, {length} tokens",
                             checkpoint=log.path.parent / CHECKPOINT, on_step=steps)
    with closing(tries), steps or nullcontext():  # stopped, the texts in flight reach the checkpoint before the report is written
        for j, result, exact in tries:
            i, t = rows[j], targets[rows[j]]
            inputs = codec.inputs(result.vectors, config.storage)
            bare, aided = score(codec.lm, layout.with_k(1), t, None), score(codec.lm, layout, t, inputs)
            log.append({"key": f"k{k}/l{length}/{i}", "k": k, "length": length, "index": i, "exact": exact,
                        "token_accuracy": result.token_accuracy, "steps": result.steps, "seconds": round(result.seconds, 3),
                        "elapsed_seconds": round(result.elapsed_seconds, 3),
                        "nats_unaided": bare.nats, "nats_memory": aided.nats, "correct_unaided": bare.correct,
                        "correct_memory": aided.correct, "wrong_memory": list(aided.wrong),
                        **({"beams": {str(n): departs(beam_decode(codec.lm, layout, inputs, n, len(t))[:len(t)], t)
                                      for n in beams}} if beams else {})})


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


def summarise(records: list[dict], ks: list[int]) -> dict:
    by_k = {}
    for k in sorted(ks):
        cells = [{"length": length, **_cell([r for r in records if r["k"] == k and r["length"] == length])}
                 for length in sorted({r["length"] for r in records if r["k"] == k})]
        all_exact = [c["length"] for c in cells if c["exact"] == c["n"]]
        accurate = [c["length"] for c in cells if c["mean_token_accuracy"] >= KURATOV_ACCURACY]
        by_k[str(k)] = {"cells": cells, "capacity_exact": max(all_exact, default=0),
                        "capacity_accuracy_99": max(accurate, default=0)}
    return {"by_k": by_k, "beams": beam_summary(records)}


def shown(capacity: int, cells: list[dict]) -> str:
    """A capacity as text: 0 means no length that was run qualified, so it lies below the shortest."""
    return str(capacity) if capacity else f"< {cells[0]['length']}" if cells else "not run"


def report(summary: dict) -> str:
    run = summary["run"]
    lines = [f"# memtok capacity: {Path(run['data']).name}", "",
             f"- model: `{run['model']}` (fingerprint `{run['model_fingerprint'][:16]}`)",
             f"- recipe: `{run['recipe']['name']}` ({json.dumps(run['recipe'], sort_keys=True)})",
             (f"- data: `{run['data']}` (sha256 `{run['data_sha256']}`), {run['n_texts']} texts; "
             f"lengths {run['lengths']}, K {run['k']}; targets {'end with EOS' if run['eos'] else 'without EOS'}"),
             f"- command: `{run['command']}`",
             f"- resume or rerun with today's options: `{command_for(run)}`",
             *(["- **interrupted**: the cells hold the texts finished so far; the same command resumes"]
               if summary.get("interrupted") else []), "",
             "| K | capacity (all exact) | capacity (mean accuracy >= 0.99) |", "|---|---|---|"]
    for k, s in summary["by_k"].items():
        lines.append(f"| {k} | {shown(s['capacity_exact'], s['cells'])} | {shown(s['capacity_accuracy_99'], s['cells'])} |")
    lines += ["", ("| K | length | texts | exact | mean accuracy | median steps | unaided nats | "
              "information gain (nats) | token gain |"), "|---|---|---|---|---|---|---|---|---|"]
    for k, s in summary["by_k"].items():
        for c in s["cells"]:
            lines.append(f"| {k} | {c['length']} | {c['n']} | {c['exact']} | {c['mean_token_accuracy']:.4f} | "
                         f"{c['median_steps']} | {c['mean_nats_unaided']} | {c['mean_information_gain']} | "
                         f"{c['mean_token_gain']} |")
    lines += beam_table(summary.get("beams", []), "token")
    lines += ["", ("Length counts text tokens (with EOS, accuracy and gains count it as one more target). Information "
              "gain: unaided cross-entropy minus cross-entropy with the memory; token gain: right argmaxes "
              "with the memory minus without. A K stops after a length where no text is exact and mean "
              "accuracy is below 0.99."), "", "![capacity](capacity.png)", ""]
    return "\n".join(lines)
