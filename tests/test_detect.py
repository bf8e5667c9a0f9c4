"""`memtok detect` on the tiny model: token vectors pass, memories do not; and the evasion field."""

import json

import pytest
import torch
from helpers import TEXTS, run
from safetensors.torch import save_file

from memtok.analysis.detect import THRESHOLD, detect, snapped
from memtok.model.forward import vocab_distance


def test_token_vectors_pass_even_rounded_and_memories_do_not(tiny_codec):
    lm = tiny_codec.lm
    tokens = lm.vocabulary
    for rounded in (tokens, tokens.to(torch.bfloat16).float(), tokens.to(torch.float16).float()):
        assert all(f.token_like for f in detect(lm, rounded))
    mems = tiny_codec.encode(TEXTS[:3], k=1)
    findings = detect(lm, torch.cat([tiny_codec.inputs(m.vectors, m.storage_dtype) for m in mems]))
    assert not any(f.token_like for f in findings) and all(f.distance > THRESHOLD for f in findings)


def test_snapping_gives_vocabulary_rows(tiny_codec):
    lm = tiny_codec.lm
    mem = tiny_codec.encode(TEXTS[0], k=2)
    snap = snapped(lm.vocabulary, tiny_codec.inputs(mem.vectors, mem.storage_dtype))
    assert all(f.token_like and f.distance == 0 for f in detect(lm, snap))


def test_detect_command_exit_codes_and_json(tiny_dir, tiny_codec, tmp_path, capsysbinary):
    mem = tmp_path / "m.safetensors"
    assert run(["encode", TEXTS[2], "-o", str(mem), "--model", tiny_dir, "-k", "1"], capsysbinary)[0] == 0
    code, out, err = run(["detect", str(mem), "--json"], capsysbinary)
    record = json.loads(out)
    assert code == 1 and record["not_token_like"] == record["vectors"] == 1 and "is a memory" in err
    embeds = tmp_path / "e.safetensors"
    save_file({"embeds": tiny_codec.lm.vocabulary[[5, 9, 40]].contiguous()}, str(embeds))
    code, out, err = run(["detect", str(embeds), "--model", tiny_dir], capsysbinary)
    assert code == 0 and out.decode().count("a token") == 3 and "0 of 3 vectors" in err


@pytest.mark.parametrize("tensors, says", [
    ({"other": torch.zeros(2, 64)}, "neither a memory nor"),
    ({"embeds": torch.zeros(64)}, "must have the shape [n, d]"),
    ({"embeds": torch.full((1, 64), float("nan"))}, "finite floating-point"),
    ({"embeds": torch.zeros(2, 63)}, "63 dimensions"),
])
def test_detect_refuses_what_is_not_input_vectors_in_one_line(tensors, says, tiny_dir, tmp_path, capsysbinary):
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path))
    code, _, err = run(["detect", str(path), "--model", tiny_dir], capsysbinary)
    assert code == 2 and says in err and err.count("\n") == 1


def test_the_vocabulary_penalty_pulls_memories_towards_tokens(tiny_codec):
    plain = tiny_codec.encode(TEXTS[:3], k=1, max_steps=100)
    near = tiny_codec.encode(TEXTS[:3], k=1, recipe="memtok:vocab_weight=2.0", max_steps=100)
    def distance(mems):
        return [float(vocab_distance(tiny_codec.lm, tiny_codec.inputs(m.vectors, m.storage_dtype))) for m in mems]
    assert all(n < p for n, p in zip(distance(near), distance(plain)))


def test_probe_sees_large_noise_break_memories_and_tiny_noise_keep_them(tiny_dir, tiny_codec, tmp_path, capsysbinary):
    from helpers import write_csv

    from memtok import EncodeConfig
    from memtok.runs.evaluate import run_eval
    from memtok.runs.sources import read_source

    data = write_csv(tmp_path / "d.csv", TEXTS[:4])
    run_eval(tiny_codec, read_source(str(data)), tmp_path / "run", EncodeConfig(k=1), show_progress_bar=False)
    code, _, err = run(["probe", str(tmp_path / "run"), "--noise", "1e-6,3", "--model", tiny_dir], capsysbinary)
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "probe" / "summary.json").read_text())
    assert summary["exact_as_made"] == 4
    assert summary["noise"]["1e-06"] == 1.0 and summary["noise"]["3.0"] < 1.0  # noise 3x the vector's norm
    assert summary["rounded"]["float16"] >= 0.75 and set(summary["rounded"]) >= {"bfloat16", "int8", "int4"}
    rows = (tmp_path / "run" / "probe" / "probe.jsonl").read_text().splitlines()
    assert len(rows) == 4 and (tmp_path / "run" / "probe" / "probe.png").exists()
    code, _, err = run(["probe", str(tmp_path), "--model", tiny_dir], capsysbinary)
    assert code == 2 and "neither an eval folder" in err
