"""PNG plots of evaluation results: matplotlib's Figure objects, drawn without pyplot, so that a
plot neither needs a display nor switches the backend of the notebook or program that asked for it."""

from __future__ import annotations

from pathlib import Path

from ..files import atomic_write


def figure(columns: int = 1, figsize: tuple[float, float] = (6, 3.6)) -> tuple:
    """A figure of one row of `columns` axes, and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(1, columns)


def save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def plot_eval(results: list[dict], out: Path) -> None:
    """accuracy_vs_length.png (token accuracy per text, exact ones marked) and steps_vs_length.png."""
    exact = [r for r in results if r["exact"]]
    wrong = [r for r in results if not r["exact"]]

    fig, ax = figure()
    for rows, colour, label in ((exact, "tab:green", "exact"), (wrong, "tab:red", "not exact")):
        ax.scatter([r["tokens"] for r in rows], [r["token_accuracy"] for r in rows], c=colour, s=18, label=label)
    ax.set(xlabel="text length (tokens)", ylabel="token accuracy (teacher-forced)",
           title=f"exact: {len(exact)}/{len(results)}")
    ax.set_ylim(min([0.9] + [r["token_accuracy"] for r in results]) - 0.02, 1.01)
    ax.legend(loc="lower left")
    save_figure(fig, out / "accuracy_vs_length.png")

    fig, ax = figure()
    for rows, colour, label in ((exact, "tab:green", "exact"), (wrong, "tab:red", "not exact (gave up)")):
        ax.scatter([r["tokens"] for r in rows], [r["steps"] for r in rows], c=colour, s=18, label=label)
    ax.set(xlabel="text length (tokens)", ylabel="optimisation steps", title="steps to an exact memory")
    ax.legend(loc="upper left")
    save_figure(fig, out / "steps_vs_length.png")


def plot_capacity(summary: dict, path: Path) -> None:
    """Exact share and information gain against length, one line per K."""
    fig, (left, right) = figure(2, figsize=(10, 3.6))
    for k, s in summary["by_k"].items():
        x = [c["length"] for c in s["cells"]]
        left.plot(x, [c["exact"] / c["n"] for c in s["cells"]], marker="o", label=f"K = {k}")
        right.plot(x, [c["mean_information_gain"] for c in s["cells"]], marker="o", label=f"K = {k}")
    cells = [c for s in summary["by_k"].values() for c in s["cells"]]
    by_length = {c["length"]: c["mean_nats_unaided"] for c in cells}
    right.plot(sorted(by_length), [by_length[n] for n in sorted(by_length)], "k--", label="unaided nats")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("text length (tokens)")
        ax.legend()
    left.set(ylabel="share of texts exact", ylim=(-0.02, 1.02), title="exact reconstruction")
    right.set(ylabel="nats", title="information gain (cross-entropy removed)")
    save_figure(fig, path)


def plot_steps(rows: list[dict], path: Path) -> None:
    """Loss, token accuracy and margin against step, one line per text (and segment), from a step log."""
    curves: dict[tuple, list[dict]] = {}
    for r in rows:
        curves.setdefault((r.get("index", r.get("key")), r.get("segment", 0), r["k"]), []).append(r)
    fig, axes = figure(3, figsize=(13, 3.6))
    for points in curves.values():
        points = sorted(points, key=lambda r: r["step"])
        x = [r["step"] for r in points]
        for ax, key in zip(axes, ("loss", "accuracy", "margin")):
            ax.plot(x, [float("nan") if r[key] is None else r[key] for r in points], lw=0.8, alpha=0.7)
    axes[0].set(ylabel="loss (mean cross-entropy per target)", yscale="log")
    axes[1].set(ylabel="token accuracy (teacher-forced)")
    axes[2].set(ylabel="margin (logits; > 0: every target right)")
    axes[2].axhline(0, color="k", lw=0.6)
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle(f"optimisation curves of {len(curves)} texts")
    save_figure(fig, path)
