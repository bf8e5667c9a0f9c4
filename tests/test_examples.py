"""The notebook in examples/ runs as written, cell after cell, on the tiny model."""

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_on_the_tiny_model(tiny_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMTOK_EXAMPLE_MODEL", tiny_dir)
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    scope: dict = {}
    for cell in cells:
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name} cell", "exec"), scope)  # noqa: S102 - our own file
    assert scope["decoded"] == scope["texts"] and all(m.exact for m in scope["mems"])
    assert len(scope["hits"]) == 2 and {h.text for h in scope["hits"]} <= set(scope["texts"])  # decoded, checked
    assert -1 <= scope["codec"].similarity(scope["cat"], scope["dog"]) <= 1
