"""Greedy against beam search: `decode --beams`, and eval and capacity reporting each width."""

import json

from helpers import TEXTS, run, write_csv

from memtok import EncodeConfig, Memory
from memtok.decode.beam import departs
from memtok.runs.capacity import run_capacity
from memtok.runs.evaluate import run_eval
from memtok.runs.sources import read_source


def test_departs_names_the_first_difference():
    assert departs("abc", "abc") is None and departs([1, 2, 3], [1, 9, 3]) == 1
    assert departs("ab", "abc") == 2 and departs("abcd", "abc") == 3


def test_one_beam_is_greedy(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:3], k=1)
    assert tiny_codec.decode(mems, beams=1) == tiny_codec.decode(mems, check=False) == TEXTS[:3]


def test_decode_beams_on_the_command_line(tiny_dir, tiny_codec, tmp_path, capsysbinary):
    mem = tmp_path / "m.safetensors"
    assert run(["encode", TEXTS[1], "-o", str(mem), "--model", tiny_dir, "-k", "1"], capsysbinary)[0] == 0
    code, out, err = run(["decode", str(mem), "--beams", "2"], capsysbinary)
    # what beam search of width 2 gives from this memory, found in Python: the command prints it only
    # when it is the text, and otherwise says why with exit 1
    beamed = tiny_codec.text_of(tiny_codec.segment_ids(Memory.load(mem), beams=2))
    if beamed == TEXTS[1]:
        assert (code, out) == (0, TEXTS[1].encode()), err
    else:
        assert code == 1 and "beam search of width 2" in err and out == b""
    code, _, err = run(["decode", str(mem), "--beams", "0"], capsysbinary)
    assert code == 2 and "--beams" in err


def test_eval_reports_each_beam_width_against_a_decode_of_its_own(tiny_codec, tmp_path):
    data = write_csv(tmp_path / "d.csv", TEXTS[:4])
    out = tmp_path / "run"
    summary = run_eval(tiny_codec, read_source(str(data)), out, EncodeConfig(k=1), show_progress_bar=False,
                       beams=[2, 4])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    from memtok import Memory

    for r in rows:
        mem = Memory.load(out / "memories" / f"{r['index']:06d}.safetensors")
        for n in (2, 4):
            decoded = tiny_codec.decode(mem, check=False, beams=n)
            assert r["beams"][str(n)] == departs(decoded, TEXTS[r["index"]])
    by_width = {b["beams"]: b for b in summary["beams"]}
    assert set(by_width) == {2, 4}
    assert by_width[2]["exact"] == sum(r["beams"]["2"] is None for r in rows) and by_width[2]["decoded"] == 4
    assert "| beams | memories | exact" in (out / "report.md").read_text()


def test_capacity_reports_beam_widths(tiny_codec, tmp_path):
    data = write_csv(tmp_path / "d.csv", TEXTS[:3])
    summary = run_capacity(tiny_codec, read_source(str(data)), tmp_path / "cap", [4], [1],
                           EncodeConfig(k=1, max_steps=100), show_progress_bar=False, beams=[1, 3])
    rows = [json.loads(line) for line in (tmp_path / "cap" / "results.jsonl").read_text().splitlines()]
    assert all(set(r["beams"]) == {"1", "3"} for r in rows)
    assert all((r["beams"]["1"] is None) == r["exact"] for r in rows)  # one beam is greedy decoding
    assert [b["beams"] for b in summary["beams"]] == [1, 3]
