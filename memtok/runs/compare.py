"""Several models' runs of the same protocol in one table and one plot, the way the paper's figure reads.

Each model's run is its own eval or capacity folder (each resumable alone, on whatever machine
fits the model); this reads their results and sets them side by side: per model and length
bucket (eval) or length (capacity), the exact count, the exact rate and the median steps.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..errors import MemtokError
from ..files import atomic_write
from .evaluate import BUCKETS
from .plots import figure, save_figure


def _rows(folder: Path) -> tuple[dict, list[dict]]:
    try:
        run = json.loads((folder / "run.json").read_text())
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise MemtokError(f"{folder} is not a finished eval or capacity folder ({type(exc).__name__})") from None
    return run, [r for r in rows if not r.get("failed")]


def _length(row: dict, capacity: bool) -> int:
    """The row's length group: a capacity cell's length, or the eval bucket its token count falls in."""
    if capacity:
        return row["length"]
    return next(hi for lo, hi in BUCKETS if lo <= row["tokens"] <= hi)


def compare(folders: list[str | Path]) -> list[dict]:
    """One row per (model, length group) over the given folders, which must all be eval or all capacity."""
    table = []
    kinds = set()
    for folder in map(Path, folders):
        run, rows = _rows(folder)
        capacity = "lengths" in run
        kinds.add(capacity)
        for group in sorted({_length(r, capacity) for r in rows}):
            mine = [r for r in rows if _length(r, capacity) == group]
            table.append({"model": run["model"], "folder": folder.name, "length": group, "texts": len(mine),
                          "exact": sum(r["exact"] for r in mine),
                          "exact_rate": round(sum(r["exact"] for r in mine) / len(mine), 3),
                          "median_steps": statistics.median(r["steps"] for r in mine),
                          "median_tokens": statistics.median(r.get("tokens", r.get("length")) for r in mine)})
    if len(kinds) > 1:
        raise MemtokError("compare takes eval folders or capacity folders, not both")
    return table


def write_comparison(table: list[dict], out: Path) -> None:
    """comparison.md and comparison.png in `out`."""
    lines = ["| model | folder | length (tokens; eval: up to) | texts | exact | exact rate | median steps |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['folder']} | {r['length']} | {r['texts']} | {r['exact']} | {r['exact_rate']:.2f} | "
              f"{r['median_steps']} |" for r in table]
    atomic_write(out / "comparison.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    atomic_write(out / "comparison.json", lambda tmp: Path(tmp).write_text(json.dumps(table, indent=2)))
    fig, (left, right) = figure(2, figsize=(10, 3.6))
    for folder in dict.fromkeys(r["folder"] for r in table):
        mine = [r for r in table if r["folder"] == folder]
        x = [r["median_tokens"] for r in mine]
        label = f"{mine[0]['model']} ({folder})"
        left.plot(x, [r["exact_rate"] for r in mine], marker="o", label=label)
        right.plot(x, [r["median_steps"] for r in mine], marker="o", label=label)
    left.set(xlabel="text length (median tokens)", ylabel="share exact", ylim=(-0.02, 1.02), title="exact reconstruction")
    right.set(xlabel="text length (median tokens)", ylabel="median steps", title="steps to an exact memory")
    left.legend(fontsize=7)
    save_figure(fig, out / "comparison.png")
