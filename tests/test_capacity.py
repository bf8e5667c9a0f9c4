"""`memtok capacity`: per-K capacity from a length sweep, resumable, with gains against no memory."""

from __future__ import annotations

import json

import pytest
from helpers import TEXTS, run, write_csv

from memtok import EncodeConfig, MemtokError
from memtok.runs.capacity import run_capacity
from memtok.runs.sources import read_source

SGD_100 = EncodeConfig(recipe="memtok-sgd", max_steps=100)


@pytest.fixture(scope="module")
def sweep(tiny_codec, tmp_path_factory):
    out = tmp_path_factory.mktemp("capacity")
    source = read_source(str(write_csv(out / "d.csv", TEXTS)))
    summary = run_capacity(tiny_codec, source, out / "run", [4, 8, 12], [1, 2], SGD_100, eos=False,
                           show_progress_bar=False)
    return tiny_codec, source, out / "run", summary


def test_capacity_is_the_longest_length_every_text_is_exact_at(sweep):
    codec, _source, out, summary = sweep
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    long_enough = {n: sum(len(codec.lm.tokenize(t)) >= n for t in TEXTS) for n in (4, 8, 12)}
    for k in ("1", "2"):
        cells = summary["by_k"][k]["cells"]
        assert [c["n"] for c in cells] == [long_enough[c["length"]] for c in cells]
        full = [c["length"] for c in cells if c["exact"] == c["n"]]
        assert summary["by_k"][k]["capacity_exact"] == max(full, default=0)
        mine = [r for r in rows if r["k"] == int(k)]
        assert sum(r["exact"] for r in mine) == sum(c["exact"] for c in cells)
    # two vectors hold at least what one does, here strictly more
    assert summary["by_k"]["2"]["capacity_exact"] > summary["by_k"]["1"]["capacity_exact"]
    # a text counted exact decodes back to its own first tokens; the unaided score is the same for every K
    r = next(r for r in rows if r["exact"] and r["k"] == 1)
    assert r["correct_memory"] == r["length"] and r["wrong_memory"] == []
    assert all(len(q["wrong_memory"]) == q["length"] - q["correct_memory"] for q in rows)
    assert any(q["wrong_memory"] for q in rows), "some cell must miss a token, or the check above is empty"
    same = {(q["length"], q["index"]): q["nats_unaided"] for q in rows if q["k"] == 1}
    assert all(same[(q["length"], q["index"])] == q["nats_unaided"] for q in rows if q["k"] == 2)
    assert (out / "capacity.png").stat().st_size > 0 and "| K | length |" in (out / "report.md").read_text()


def test_capacity_rerun_resumes_and_other_settings_are_refused(sweep):
    codec, source, out, _ = sweep
    again = run_capacity(codec, source, out, [4, 8, 12], [1, 2], SGD_100, eos=False, show_progress_bar=False)
    assert again["encoded_now"] == 0
    with pytest.raises(MemtokError, match="other settings"):
        run_capacity(codec, source, out, [4], [1], EncodeConfig(max_steps=100), eos=True, show_progress_bar=False)


def test_an_interrupted_capacity_run_reports_the_texts_it_finished(tiny_codec, tmp_path, monkeypatch):
    real = tiny_codec.encode_ids

    def one_then_interrupt(*args, **kwargs):
        yield next(iter(real(*args, **kwargs)))
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny_codec, "encode_ids", one_then_interrupt)
    source = read_source(str(write_csv(tmp_path / "d.csv", TEXTS)))
    with pytest.raises(KeyboardInterrupt):
        run_capacity(tiny_codec, source, tmp_path / "run", [8], [1], SGD_100, show_progress_bar=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["interrupted"] and summary["encoded_now"] == 1 and summary["by_k"]["1"]["cells"][0]["n"] == 1
    assert "**interrupted**" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--lengths", "8,x"], "not a comma-separated list"),
    (["--tokens", "0,1"], "at least 1"),
    (["--lengths", "500"], "does not fit the context"),
])
def test_capacity_bad_options_are_one_line(tiny_dir, tmp_path, capsysbinary, args, message):
    data = write_csv(tmp_path / "d.csv", TEXTS)
    code, _out, err = run(["capacity", str(data), "--model", tiny_dir, "--out", str(tmp_path / "o"), *args],
                         capsysbinary)
    assert code == 2 and message in err and "Traceback" not in err
