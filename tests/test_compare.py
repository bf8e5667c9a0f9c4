"""`memtok compare`: several models' folders in one table and plot (no model needed)."""

import json

import pytest
from helpers import run

from memtok import MemtokError
from memtok.runs.compare import compare


def folder(path, model, rows, capacity=False):
    path.mkdir()
    (path / "run.json").write_text(json.dumps({"model": model, **({"lengths": [8]} if capacity else {})}))
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_per_model_and_length_and_the_command_writes_table_and_plot(tmp_path, capsysbinary):
    a = folder(tmp_path / "a", "small", [{"tokens": 10, "exact": True, "steps": 5},
                                         {"tokens": 12, "exact": False, "steps": 9},
                                         {"tokens": 30, "exact": True, "steps": 20}, {"failed": "x", "exact": False}])
    b = folder(tmp_path / "b", "big", [{"tokens": 10, "exact": True, "steps": 3}])
    table = compare([a, b])
    assert [(r["model"], r["length"], r["texts"], r["exact"], r["median_steps"]) for r in table] == \
        [("small", 16, 2, 1, 7.0), ("small", 32, 1, 1, 20), ("big", 16, 1, 1, 3)]
    code, _, err = run(["compare", str(a), str(b), "--out", str(tmp_path / "out")], capsysbinary)
    assert code == 0 and "3 rows" in err
    assert "| big | b | 16 | 1 | 1 | 1.00 | 3 |" in (tmp_path / "out" / "comparison.md").read_text()
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0


def test_eval_and_capacity_folders_do_not_mix(tmp_path):
    a = folder(tmp_path / "a", "m", [{"tokens": 4, "exact": True, "steps": 1}])
    c = folder(tmp_path / "c", "m", [{"length": 8, "exact": True, "steps": 1}], capacity=True)
    with pytest.raises(MemtokError, match="not both"):
        compare([a, c])
    with pytest.raises(MemtokError, match="not a finished"):
        compare([tmp_path])


def test_a_plot_leaves_the_callers_matplotlib_backend_as_it_was(tmp_path):
    """A notebook's inline backend must survive a library call that draws a PNG."""
    import matplotlib

    from memtok.runs.plots import plot_steps

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_steps([{"index": 0, "k": 1, "step": i, "loss": 1 / (i + 1), "accuracy": 0.5, "margin": None}
                    for i in range(3)], tmp_path / "steps.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)
