"""What a store and an eval folder survive: other process counts, a second run, a typo, a bad row,
a power loss, a crafted index."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import TEXTS, run, write_csv

from memtok import EncodeConfig, MemtokError, NotAMemoryError
from memtok.files import atomic_write, lock_folder
from memtok.runs.encode_corpus import run_corpus
from memtok.runs.evaluate import run_eval
from memtok.runs.sources import read_source
from memtok.store import MemoryStore
from memtok.store.writer import ShardWriter

QUIET = {"show_progress_bar": False}


def source(tmp_path, texts=TEXTS[:4]):
    return read_source(str(write_csv(tmp_path / "d.csv", texts)))


def rows_once(store_dir, n):
    index = pq.read_table(store_dir / "index.parquet").to_pylist()
    assert [r["row"] for r in index] == list(range(n))  # every row, once
    return index


def test_a_store_resumes_with_fewer_processes_than_it_was_killed_with(tiny_codec, tmp_path):
    src, root = source(tmp_path), tmp_path / "store"
    # what a 2-process run killed mid-way leaves: finished rows of rank 1 as parts, never packed
    for row in (1, 3):
        ShardWriter(root, rank=1).add(row, memory=tiny_codec.encode(TEXTS[row]))
    s = run_corpus(tiny_codec, src, root, **QUIET)  # one process now
    assert (s["resumed"], s["encoded_now"], s["total"], s["exact"]) == (2, 2, 4, 4)
    rows_once(root, 4)
    store = MemoryStore(root)
    assert [tiny_codec.decode(store[i]) for i in store] == TEXTS[:4]
    assert not (root / "parts" / "r1").exists()


def test_a_second_run_on_the_same_folder_is_refused(tiny_dir, tiny_codec, tmp_path, capsysbinary):
    data = write_csv(tmp_path / "d.csv", TEXTS[:2])
    for command, out in (("encode-corpus", tmp_path / "store"), ("eval", tmp_path / "run")):
        with lock_folder(out):  # as the first run holds it
            code, _, err = run([command, str(data), "--out", str(out), "--model", tiny_dir], capsysbinary)
        assert code == 2 and "in use by another memtok run" in err and len(err.strip().splitlines()) == 1
        assert not (out / "results.jsonl").exists() and not (out / "shards").exists()
        code, _, err = run([command, str(data), "--out", str(out), "--model", tiny_dir], capsysbinary)
        assert code == 0, err  # released: the next run goes ahead


def test_options_are_checked_before_the_settings_are_pinned(tiny_codec, tmp_path):
    src = source(tmp_path, TEXTS[:2])
    for go, out in ((run_corpus, tmp_path / "store"), (run_eval, tmp_path / "run")):
        with pytest.raises(MemtokError, match="no room for text"):  # K = 70 fits no text in the context of 64
            go(tiny_codec, src, out, EncodeConfig(k=70), **QUIET)
        go(tiny_codec, src, out, EncodeConfig(k=1), **QUIET)  # the corrected command is not refused


def test_a_row_that_cannot_be_encoded_is_recorded_as_failed_and_eval_goes_on(tiny_codec, tmp_path):
    s = run_eval(tiny_codec, source(tmp_path, [TEXTS[0], "", TEXTS[1]]), tmp_path / "run", **QUIET)
    assert (s["overall"]["n"], s["overall"]["exact"], s["overall"]["failed"]) == (3, 2, 1)
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r.get("failed")]
    assert [r["index"] for r in failed] == [1] and "empty text" in failed[0]["failed"]
    assert "failed, counted as not exact): 1" in (tmp_path / "run" / "report.md").read_text()


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
    assert (tmp_path / "a.txt").read_text() == "x"
    assert any(p.startswith(str(tmp_path / ".a.txt.")) for p in synced), synced  # the file, before its rename
    assert str(tmp_path) in synced  # the folder, after it


def test_after_a_power_loss_empty_files_are_set_aside_and_their_rows_redone(tiny_codec, tmp_path, caplog):
    src, root = source(tmp_path), tmp_path / "store"
    run_corpus(tiny_codec, src, root, shard_size=2, **QUIET)
    shards = sorted((root / "shards").glob("*.safetensors"))
    shards[0].write_bytes(b"")  # a shard whose data never reached the disk
    (root / "parts" / "r0").mkdir(parents=True, exist_ok=True)
    (root / "parts" / "r0" / "000000003.safetensors").write_bytes(b"")  # and a part
    (root / "shards" / ".r0-00002.safetensors.x1.tmp").write_bytes(b"half")  # a write cut short
    s = run_corpus(tiny_codec, src, root, shard_size=2, **QUIET)
    assert s["total"] == 4 and s["exact"] == 4 and s["encoded_now"] == 2
    rows_once(root, 4)
    assert (root / "shards" / (shards[0].name + ".corrupt")).exists()
    assert not list(root.rglob("*.tmp")) and "set aside" in caplog.text
    store = MemoryStore(root)
    assert [tiny_codec.decode(store[i]) for i in store] == TEXTS[:4]


def test_an_eval_line_naming_a_lost_memory_is_encoded_again(tiny_codec, tmp_path):
    src, out = source(tmp_path, TEXTS[:2]), tmp_path / "run"
    run_eval(tiny_codec, src, out, **QUIET)
    (out / "memories" / "000001.safetensors").write_bytes(b"")
    s = run_eval(tiny_codec, src, out, **QUIET)
    assert s["encoded_now"] == 1 and s["overall"]["n"] == 2 and s["overall"]["exact"] == 2
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == [0, 1]


@pytest.mark.parametrize("field, value", [("id", "../../evil"), ("shard", "../../../etc/passwd")])
def test_a_crafted_index_cannot_point_outside_the_store(tiny_codec, tmp_path, field, value, capsysbinary):
    src, root = source(tmp_path, TEXTS[:1]), tmp_path / "store"
    run_corpus(tiny_codec, src, root, **QUIET)
    rows = pq.read_table(root / "index.parquet").to_pylist()
    rows[0][field] = value
    pq.write_table(pa.Table.from_pylist(rows), root / "index.parquet")
    with pytest.raises(NotAMemoryError, match="store's own form"):
        MemoryStore(root)
    code, _, err = run(["decode", str(root), "--all", "-o", str(tmp_path / "texts")], capsysbinary)
    assert code == 2 and "store's own form" in err
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "texts").exists()
