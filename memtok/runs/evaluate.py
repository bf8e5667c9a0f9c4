"""`memtok eval`: the paper's experiment on any data: per-text results, a summary, a report, plots.

Resumable: results are appended one line per text as each finishes, each after its memory is
saved under `memories/`, and a rerun of the same command skips what is already there
(`memtok.runs.folder`).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ..codec import MemoryCodec
from ..decode.beam import departs
from ..encode.resolved import Resolved
from ..encode.steplog import StepLog, read_steps
from ..errors import MemtokError
from ..files import set_aside
from ..format.memory import Memory
from ..settings.config import EncodeConfig
from .beam_summary import beam_summary, beam_table
from .folder import CHECKPOINT, STEPS, ResultsLog, refusals, run_folder, settings, with_pinned_recipe, write_outputs
from .migrate import command_for
from .plots import plot_eval, plot_steps
from .sources import Source

BUCKETS = [(1, 16), (17, 32), (33, 64), (65, 128), (129, 256), (257, 512), (513, 10**9)]


def record(index: int, text: str, mem: Memory) -> dict:
    """One line of results.jsonl."""
    return {"index": index, "chars": len(text), "tokens": mem.n_tokens, "exact": mem.exact,
            "token_accuracy": mem.token_accuracy, "steps": mem.steps, "seconds": mem.seconds,
            "elapsed_seconds": mem.elapsed_seconds,
            "final_loss": mem.final_loss, "min_margin": mem.min_margin, "k": mem.k,
            "segment_k": [seg["k"] for seg in mem.segments], "tries": [seg.get("tried") for seg in mem.segments],
            "recipe": mem.recipe["name"],
            "dtype": mem.storage_dtype, "memory_bytes": mem.nbytes, "entropy_bits": mem.entropy_bits,
            **mem.sizes()}


def memory_file(index: int) -> str:
    return f"{index:06d}.safetensors"


def run_eval(codec: MemoryCodec, source: Source, out: str | Path, config: EncodeConfig | None = None,
             command: str = "", show_progress_bar: bool = True, log_steps: int | None = None,
             beams: list[int] = ()) -> dict:
    """Encode every text of `source` not yet in `out/results.jsonl` (its memory into `out/memories/`), then
    write the summary, report and plots. A text that cannot be encoded is recorded as failed. An
    interrupted run (Ctrl-C, SIGTERM) writes them for the texts it finished before it stops. With
    `log_steps`, each text's curve goes to `out/steps.jsonl` (`memtok.encode.steplog`) and into the report.
    With `beams`, each memory is also decoded by beam search of each width, and its record says
    where that leaves the text (`beams`: width -> first differing character, None when exact)."""
    out = Path(out)
    resolved = codec.resolve(with_pinned_recipe(config or EncodeConfig(), out / "run.json"))
    run = settings(codec.lm, resolved, source, command)
    with run_folder(out, run) as log:
        log.drop(_lost_memories(out, log))
        rows = range(source.first, source.first + len(source.texts))  # what results are numbered by
        pending = [i for i in rows if i not in log.done]
        resumed, began = len(source.texts) - len(pending), time.perf_counter()
        try:
            _encode_pending(codec, source, out, log, pending, resolved, show_progress_bar, log_steps, beams)
        except KeyboardInterrupt:
            log.reread()
            _write(out, run, log, rows, resumed, began, interrupted=True)
            raise
        return _write(out, run, log, rows, resumed, began)


def _write(out: Path, run: dict, log: ResultsLog, rows: range, resumed: int, began: float,
           interrupted: bool = False) -> dict:
    """The summary, report and plots of the texts logged so far."""
    wall = time.perf_counter() - began
    results = sorted((r for r in log.records if r["index"] in rows), key=lambda r: r["index"])
    now = len(results) - resumed
    summary = summarise(results)
    log.parts.keep()
    summary.update(run=run, resumed_with=resumed, encoded_now=now, wall_seconds_now=round(wall, 1),
                   wall_seconds=round(log.parts.total(), 1), parts=log.parts.number,
                   texts_per_hour_now=round(3600 * now / wall, 1) if now and wall > 0 else None,
                   interrupted=interrupted)
    curves = read_steps(out / STEPS)
    summary["step_log"] = bool(curves)

    def plots(folder: Path) -> None:
        plot_eval([r for r in results if not r.get("failed")], folder)
        if curves:
            plot_steps(curves, folder / "steps.png")

    write_outputs(out, summary, report(summary), plots)
    return summary


def _lost_memories(out: Path, log: ResultsLog) -> list[int]:
    """Results whose memory file is gone or unreadable (a power loss before it reached the disk): their
    texts are encoded again, and the damaged file is set aside."""
    lost = []
    for r in log.records:
        if r.get("failed"):
            continue
        path = out / "memories" / memory_file(r["index"])
        try:
            Memory.load(path)
        except MemtokError as exc:
            if path.exists():
                set_aside(path, str(exc))
            lost.append(r["index"])
    return lost


def _encode_pending(codec: MemoryCodec, source: Source, out: Path, log: ResultsLog, pending: list[int],
                    resolved: Resolved, show_progress_bar: bool, log_steps: int | None, beams: list[int]) -> None:
    """Encode the pending texts; each line of results.jsonl is written after its memory is on disk."""
    text = {i: source.texts[i - source.first] for i in pending}
    refused = refusals(codec.lm, [text[i] for i in pending])
    for j, error in refused.items():
        log.append({"index": pending[j], "chars": len(text[pending[j]]), "exact": False, "failed": error})
    valid = [i for j, i in enumerate(pending) if j not in refused]
    texts = [text[i] for i in valid]

    def finished(j: int, mem: Memory) -> None:
        mem.save(out / "memories" / memory_file(valid[j]))
        beam = {str(n): departs(codec.decode(mem, check=False, beams=n), texts[j]) for n in beams}
        log.append({**record(valid[j], texts[j], mem), **({"beams": beam} if beams else {})})

    if not texts:
        return
    steps = StepLog(out / STEPS, log_steps, lambda key: {"index": valid[key["text"]], "segment": key["segment"]}) \
        if log_steps else None
    try:
        codec.encode(texts, resolved, show_progress_bar=show_progress_bar, on_result=finished, on_step=steps,
                     checkpoint=out / CHECKPOINT)
    finally:
        if steps is not None:
            steps.close()


def _stats(rows: list[dict]) -> dict:
    """Counts over every row; means and medians over the texts that were encoded (not the failed)."""
    ok = [r for r in rows if not r.get("failed")]
    stats = {"n": len(rows), "failed": len(rows) - len(ok), "exact": sum(r["exact"] for r in rows),
             "exact_rate": round(sum(r["exact"] for r in rows) / len(rows), 4) if rows else 0.0}
    if not ok:
        return stats
    return {**stats,
            "mean_token_accuracy": round(statistics.fmean(r["token_accuracy"] for r in ok), 4),
            "median_steps": statistics.median(r["steps"] for r in ok),
            "median_seconds": round(statistics.median(r["seconds"] for r in ok), 2),
            "median_tokens": statistics.median(r["tokens"] for r in ok),
            "texts_per_k": {str(k): sum(r["k"] == k for r in ok) for k in sorted({r["k"] for r in ok})},
            **_size_stats(ok)}


def _size_stats(ok: list[dict]) -> dict:
    """Medians of each size figure the rows have (`memtok.format.sizes.size_figures`)."""
    keys = ("payload_bytes", "utf8_bytes", "gzip_bytes", "xz_bytes", "zstd_bytes", "entropy_bytes", "bits_per_byte",
            "entropy_bits_per_byte", "to_zstd", "to_entropy")
    return {f"median_{key}": round(statistics.median(r[key] for r in ok), 3) for key in keys if all(key in r for r in ok)}


def summarise(results: list[dict]) -> dict:
    buckets = []
    for lo, hi in BUCKETS:
        rows = [r for r in results if not r.get("failed") and lo <= r["tokens"] <= hi]
        if rows:
            buckets.append({"tokens": f"{lo}-{hi}" if hi < 10**9 else f">={lo}", **_stats(rows)})
    return {"overall": _stats(results), "by_length": buckets, "beams": beam_summary(results)}


def report(summary: dict) -> str:
    run, overall = summary["run"], summary["overall"]
    lines = [
        f"# memtok eval: {Path(run['data']).name}", "",
        f"- model: `{run['model']}` (fingerprint `{run['model_fingerprint'][:16]}`)",
        f"- recipe: `{run['recipe']['name']}` ({json.dumps(run['recipe'], sort_keys=True)})",
        f"- memory vectors per segment (K): {run['k']}"
        + (f" ({'compact' if run.get('compact') else 'favour ' + run['favour']})" if run['k'] == 'plan' else '')
        + f"; template `{run['template']}`; storage {run['storage']}",
        f"- data: `{run['data']}` (sha256 `{run['data_sha256']}`), {run['n_texts']} texts",
        f"- command: `{run['command']}`",
        f"- resume or rerun with today's options: `{command_for(run)}`",
        f"- this run: {summary['encoded_now']} texts encoded in {summary['wall_seconds_now']} s"
        + (f" ({summary['texts_per_hour_now']} texts/hour)" if summary["texts_per_hour_now"] else "")
        + f", {summary['resumed_with']} taken from an earlier run of the same command; "
        + f"{summary['wall_seconds']} s in all over {summary['parts']} part(s), which the texts' seconds add up to",
        f"- texts that could not be encoded (failed, counted as not exact): {overall['failed']}",
        *([f"- **interrupted**: {run['n_texts'] - overall['n']} texts not yet encoded; the same command resumes"]
          if summary.get("interrupted") else []),
        "",
        "| text tokens | texts | exact | exact rate | mean token accuracy | median steps | median seconds (share) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in [{"tokens": "all", **overall}] + summary["by_length"]:
        if "mean_token_accuracy" not in row:  # every text failed
            lines.append(f"| {row['tokens']} | {row['n']} | 0 | 0.00 | - | - | - |")
            continue
        lines.append(f"| {row['tokens']} | {row['n']} | {row['exact']} | {row['exact_rate']:.2f} | "
                     f"{row['mean_token_accuracy']:.4f} | {row['median_steps']} | {row['median_seconds']} |")
    if "median_to_entropy" in overall:
        o = overall
        lines += ["", (f"Median bytes per text: memory payload {o['median_payload_bytes']} "
                       f"({o['median_bits_per_byte']} bits per byte of text); text as UTF-8 {o['median_utf8_bytes']}, "
                       f"gzip {o['median_gzip_bytes']}, xz {o['median_xz_bytes']}, zstd {o['median_zstd_bytes']}, "
                       f"the model's bound {o['median_entropy_bytes']} ({o['median_entropy_bits_per_byte']} bits per "
                       f"byte). Median payload / zstd: {o['median_to_zstd']}; payload / bound: "
                       f"{o['median_to_entropy']}."),
                  "", "Texts per number of memory vectors K: "
                  + ", ".join(f"K={k}: {n}" for k, n in overall["texts_per_k"].items()) + "."]
    lines += beam_table(summary.get("beams", []), "character")
    lines += ["", ("Token accuracy is the paper's: the share of target positions (EOS included) whose "
                   "teacher-forced argmax is right. Exact means greedy decoding from the memory alone gave "
                   "back the text. Seconds are each text's share of the run's wall time (a batch's passes and "
                   "verification split among the texts in it), so they add up to the run; `results.jsonl` keeps "
                   "each text's first-to-last-pass time as `elapsed_seconds`. Each text's memory is in `memories/` (file named by the text's index), "
                   "ready for `memtok decode` and `memtok info`."), "",
              "![exact rate and token accuracy against length](accuracy_vs_length.png)", "",
              "![steps against length](steps_vs_length.png)", ""]
    if summary.get("step_log"):
        lines += ["Each text's optimisation curve (`steps.jsonl`, every N steps of `--log-steps N`):", "",
                  "![loss, token accuracy and margin against step](steps.png)", ""]
    return "\n".join(lines)
