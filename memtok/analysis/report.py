"""The probe's outputs: one JSON line per memory, a markdown table and a plot, each whole or absent."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write
from ..runs.plots import figure, save_figure


def write_probe(folder: Path, rows: list[dict], summary: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    atomic_write(folder / "probe.jsonl", lambda tmp: Path(tmp).write_text(lines))
    atomic_write(folder / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    _plot(summary, folder / "probe.png")
    atomic_write(folder / "probe.md", lambda tmp: Path(tmp).write_text(probe_table(summary)))


def probe_table(summary: dict) -> str:
    """The probe's figures as markdown: exact share per probe, over the memories exact as made."""
    lines = [f"{summary['exact_as_made']} of {summary['memories']} memories give their text as made; shares below "
             "are of those.", "", "| noise (norm / vector's norm) | still exact | median margin, kept | "
             "median margin, lost |", "|---|---|---|---|"]
    for level, share in summary["noise"].items():
        kept, lost = summary["margin_kept_vs_lost"][level]
        lines.append(f"| {level} | {share:.2f} | {'-' if kept is None else kept} | {'-' if lost is None else lost} |")
    lines += ["", "| rounded to | still exact |", "|---|---|"]
    lines += [f"| {dtype} | {share:.2f} |" for dtype, share in summary["rounded"].items()]
    lines += ["", f"Moved into another prompt: {summary['moved']:.2f} still exact.", ""]
    return "\n".join(lines)


def _plot(summary: dict, path: Path) -> None:
    fig, ax = figure()
    levels = [float(lv) for lv in summary["noise"]]
    ax.plot(levels, list(summary["noise"].values()), marker="o")
    ax.set(xscale="log", xlabel="noise norm / vector norm", ylabel="share still exact", ylim=(-0.02, 1.02),
           title=f"{summary['exact_as_made']} memories exact as made")
    save_figure(fig, path)
