"""`memtok eval` on the tiny model: outputs, data formats, and resuming after a kill."""

import json
import signal
import time

import pytest
from helpers import TEXTS, memtok, run, write_csv

from memtok import EncodeConfig, MemtokError
from memtok.runs.folder import ResultsLog
from memtok.runs.sources import read_source


@pytest.mark.slow  # a subprocess
def test_eval_writes_results_summary_report_and_plots(tiny_dir, tmp_path):
    data = write_csv(tmp_path / "d.csv", TEXTS + ["zebra quantum fjord"])
    out = tmp_path / "run"
    p = memtok("eval", str(data), "--limit", "6", "--model", tiny_dir, "--out", str(out), "--max-steps", "400")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-800:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == list(range(6))  # --limit: the first 6 in file order
    for key in ("chars", "tokens", "exact", "token_accuracy", "steps", "seconds", "final_loss", "min_margin", "k",
                "recipe", "memory_bytes", "payload_bytes", "utf8_bytes", "gzip_bytes", "xz_bytes", "zstd_bytes",
                "entropy_bits", "bits_per_byte", "to_zstd", "to_entropy"):
        assert key in rows[0], key
    first = next(r for r in rows if r["index"] == 0)
    assert first["utf8_bytes"] == len(TEXTS[0].encode()) and first["memory_bytes"] == 4 * 64
    # payload: the vectors, a 4-byte checksum and 3 bytes for the one segment's K and length
    assert first["payload_bytes"] == 4 * 64 + 4 + 3
    assert first["to_zstd"] == round(first["payload_bytes"] / first["zstd_bytes"], 3)
    assert all(r["exact"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["n"] == 6 and summary["overall"]["exact"] == 6
    assert summary["overall"]["texts_per_k"] == {"1": 6} and first["segment_k"] == [1]
    assert summary["run"]["data_sha256"] and summary["by_length"]
    from importlib.metadata import version

    from memtok.runs.provenance import cpu_name  # where its figures came from
    made_in = summary["environment"]
    assert made_in["versions"]["torch"] == version("torch") and made_in["cpu"] == cpu_name()
    assert made_in["torch_threads"] >= 1 and made_in["commit"] is not None  # the suite runs in a checkout
    report = (out / "report.md").read_text()
    assert summary["overall"]["median_payload_bytes"] == 4 * 64 + 7 and "payload / zstd" in report
    assert "| all | 6 | 6 |" in report and summary["run"]["data_sha256"] in report and "K=1: 6" in report
    for png in ("accuracy_vs_length.png", "steps_vs_length.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6/6 exact" in err.decode().splitlines()[-1]
    # every text's memory is kept, and decodes back to its text
    assert sorted(f.name for f in (out / "memories").iterdir()) == [f"{i:06d}.safetensors" for i in range(6)]
    from memtok import Memory, MemoryCodec

    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    assert codec.decode(Memory.load(out / "memories" / "000005.safetensors")) == (TEXTS + ["zebra quantum fjord"])[5]


@pytest.mark.slow  # a subprocess
def test_eval_resumes_after_a_kill_without_redoing_or_losing_texts(tiny_dir, tmp_path):
    hard = "zebra quantum fjord"  # each gives up after --max-steps: slow enough to kill mid-run
    texts = [t for pair in zip(TEXTS, [hard] * len(TEXTS)) for t in pair]
    data = write_csv(tmp_path / "d.csv", texts)
    out = tmp_path / "run"
    args = ["eval", str(data), "--model", tiny_dir, "--out", str(out), "-k", "1", "--max-steps", "150", "--batch-size", "2"]
    p = memtok(*args)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 2):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = [json.loads(line)["index"] for line in results.read_text().splitlines()]
    assert 2 <= len(before) < len(texts), "the kill must land mid-run"
    with open(results, "a") as f:
        f.write('{"index": 99, "cut sh')  # what a kill during a write would leave
    p = memtok(*args)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-800:]
    after = [json.loads(line)["index"] for line in results.read_text().splitlines()]
    assert sorted(after) == list(range(len(texts)))  # nothing lost, nothing twice
    assert after[: len(before)] == before  # finished texts were not redone
    assert sorted(int(f.stem) for f in (out / "memories").glob("*.safetensors")) == sorted(after)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_with"] == len(before) and summary["encoded_now"] == len(texts) - len(before)


def test_a_stop_between_writing_a_result_and_remembering_it_is_reported_as_the_file_holds_it(
        tiny_codec, tmp_path, monkeypatch):
    from memtok.runs.evaluate import run_eval

    def append_then_stop(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        raise KeyboardInterrupt  # SIGTERM's handler, landing after the write
    monkeypatch.setattr(ResultsLog, "append", append_then_stop)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(tiny_codec, read_source(str(write_csv(tmp_path / "d.csv", TEXTS[:2]))), out,
                 EncodeConfig(k=1, batch_size=1), show_progress_bar=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["overall"]["n"] == summary["encoded_now"] == 1


@pytest.mark.slow  # a subprocess
def test_sigterm_stops_eval_with_the_report_of_the_texts_it_finished(tiny_dir, tmp_path):
    hard = "zebra quantum fjord"
    texts = [t for pair in zip(TEXTS, [hard] * len(TEXTS)) for t in pair]
    out = tmp_path / "run"
    p = memtok("eval", str(write_csv(tmp_path / "d.csv", texts)), "--model", tiny_dir, "--out", str(out), "-k", "1",
               "--max-steps", "400", "--batch-size", "2")
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 1):
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.decode().splitlines()[-1] == "memtok: interrupted"
    logged = results.read_text().count("\n")
    assert 1 <= logged < len(texts), "the signal must land mid-run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["overall"]["n"] == summary["encoded_now"] == logged
    assert f"{len(texts) - logged} texts not yet encoded" in (out / "report.md").read_text()
    assert (out / "in-flight.safetensors").exists()  # texts mid-way (a hard one at least), kept for the rerun
    assert "in flight saved to" in err.decode()


def test_eval_refuses_to_mix_settings(tiny_codec, tmp_path):
    from memtok.runs.evaluate import run_eval

    source = read_source(str(write_csv(tmp_path / "d.csv", TEXTS[:2])))
    run_eval(tiny_codec, source, tmp_path / "run", show_progress_bar=False)
    with pytest.raises(MemtokError, match="other settings"):
        run_eval(tiny_codec, source, tmp_path / "run", EncodeConfig(k=2), show_progress_bar=False)


def test_a_folder_resumes_under_a_newer_recipe_field_left_off_and_names_a_changed_one(tmp_path):
    from memtok.runs.folder import pin_settings

    path = tmp_path / "run.json"
    old = {"k": "plan", "recipe": {"name": "memtok", "lr": 0.2}}
    pin_settings(path, old)
    pin_settings(path, {"k": "plan", "recipe": {"name": "memtok", "lr": 0.2, "grow_tokens": 0}})
    with pytest.raises(MemtokError, match=r"\(recipe.grow_tokens\)"):
        pin_settings(path, {"k": "plan", "recipe": {"name": "memtok", "lr": 0.2, "grow_tokens": 32}})
    with pytest.raises(MemtokError, match=r"\(recipe.lr\)"):
        pin_settings(path, {"k": "plan", "recipe": {"name": "memtok", "lr": 0.1}})


def test_a_rerun_records_its_free_settings_so_the_folder_names_its_latest_command(tmp_path):
    from memtok.runs.folder import FREE, pin_settings

    path = tmp_path / "run.json"
    free = (*FREE, "lengths")
    pin_settings(path, {"k": [1], "lengths": [32, 64], "batch_size": 10, "command": "first"}, free)
    pin_settings(path, {"k": [1], "lengths": [32], "batch_size": 4, "command": "second"}, free)
    assert json.loads(path.read_text()) == {"k": [1], "lengths": [32], "batch_size": 4, "command": "second"}
    with pytest.raises(MemtokError, match=r"\(k\)"):
        pin_settings(path, {"k": [2], "lengths": [32], "batch_size": 4, "command": "third"}, free)
    assert json.loads(path.read_text())["command"] == "second"
    path.write_text(json.dumps({"tokens": [1], "lengths": [32], "batch_size": 4, "command": "old"}))
    pin_settings(path, {"k": [1], "lengths": [32], "batch_size": 4, "command": "renamed"}, free)
    assert json.loads(path.read_text()) == {"k": [1], "lengths": [32], "batch_size": 4, "command": "renamed"}


def test_sources_read_csv_jsonl_and_text_blocks(tmp_path):
    assert read_source(str(write_csv(tmp_path / "a.csv", TEXTS)), limit=3).texts == TEXTS[:3]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[:2]) + "\n")
    assert read_source(str(tmp_path / "b.jsonl")).texts == TEXTS[:2]
    (tmp_path / "c.txt").write_text("first block\nstill first\n\n\nsecond block\n")
    assert read_source(str(tmp_path / "c.txt")).texts == ["first block\nstill first", "second block"]
    with pytest.raises(MemtokError, match="no column 'text'"):
        read_source(str(tmp_path / "a.csv"), column="text")
    with pytest.raises(MemtokError, match="no such file"):
        read_source(str(tmp_path / "missing.csv"))


def test_results_log_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"index": 0}\n{"index": 1}\n{"index": 2, "ha')
    log = ResultsLog(path)
    assert log.done == {0, 1}
    log.append({"index": 2})
    lines = path.read_text().splitlines()
    assert lines[:2] == ['{"index": 0}', '{"index": 1}'] and len(lines) == 3
    assert {k: v for k, v in json.loads(lines[2]).items() if not k.startswith("part")} == {"index": 2}


def test_a_resumed_runs_wall_counts_every_part_as_its_texts_seconds_do(tiny_codec, tmp_path):
    """Per-text seconds (shares of the passes) add up to at most the wall of all its parts; a text's
    elapsed time runs from its first segment's first pass to its last segment's last, so segments
    optimised side by side are not counted twice."""
    from memtok.runs.evaluate import run_eval
    from memtok.runs.sources import Source

    texts = [" ".join(TEXTS[:3]), TEXTS[4]]  # the first cut into segments that run side by side
    config = EncodeConfig(k=1, segment_tokens=6, batch_size=4, max_steps=40)  # seconds, not exactness, are tested
    first = run_eval(tiny_codec, Source("d", texts[:1], "0" * 64), tmp_path, config, show_progress_bar=False)
    second = run_eval(tiny_codec, Source("d", texts, "0" * 64), tmp_path, config, show_progress_bar=False)
    assert (first["parts"], second["parts"]) == (1, 2) and second["encoded_now"] == 1
    assert second["wall_seconds"] >= first["wall_seconds_now"] + second["wall_seconds_now"] - 0.1  # rounding to 0.1
    records = ResultsLog(tmp_path / "results.jsonl").records
    assert sum(r["seconds"] for r in records) <= second["wall_seconds"] + 0.1
    assert [r["part"] for r in records] == [1, 2]
    long = records[0]
    assert len(long["segment_k"]) > 1 and long["elapsed_seconds"] <= first["wall_seconds_now"] + 0.1


def test_sources_read_tsv_json_arrays_and_parquet_and_refuse_other_json_in_one_line(tmp_path):
    (tmp_path / "a.tsv").write_text("id\tchunk\n1\t" + TEXTS[0] + "\n2\t" + TEXTS[1] + "\n")
    assert read_source(str(tmp_path / "a.tsv")).texts == TEXTS[:2]
    (tmp_path / "b.json").write_text(json.dumps([{"text": TEXTS[0]}, {"text": TEXTS[1]}]))
    (tmp_path / "c.json").write_text(json.dumps(TEXTS[:3]))
    assert read_source(str(tmp_path / "b.json")).texts == TEXTS[:2] and read_source(str(tmp_path / "c.json")).texts == TEXTS[:3]
    (tmp_path / "d.json").write_text(json.dumps({"text": TEXTS[0]}))
    with pytest.raises(MemtokError, match="a JSON file of texts is an array"):
        read_source(str(tmp_path / "d.json"))
    (tmp_path / "e.json").write_text(json.dumps([{"body": "x"}]))
    with pytest.raises(MemtokError, match="item 0: neither a string nor an object with a string 'text'"):
        read_source(str(tmp_path / "e.json"))
    pq = pytest.importorskip("pyarrow.parquet", reason="the datasets extra (pip install 'memtok[datasets]')")
    import pyarrow

    pq.write_table(pyarrow.table({"text": TEXTS[:4]}), tmp_path / "f.parquet")
    assert read_source(str(tmp_path / "f.parquet"), rows="1:", limit=2).texts == TEXTS[1:3]
    (tmp_path / "g.parquet").write_bytes(b"PAR1 not a table")
    with pytest.raises(MemtokError, match="cannot read .*g.parquet as parquet"):
        read_source(str(tmp_path / "g.parquet"))


def hub_folder(root, shards: dict[str, list[list[str]]]):
    """A dataset folder in the Hub's layout: a subset per key, each of parquet shards of texts, named
    by the README's `configs`, as `datasets` reads a repository."""
    import pyarrow
    import pyarrow.parquet as pq

    card = ["---", "configs:"]
    for subset, parts in shards.items():
        (root / subset).mkdir(parents=True)
        for i, texts in enumerate(parts):
            pq.write_table(pyarrow.table({"text": texts}), root / subset / f"train-{i:05d}-of-{len(parts):05d}.parquet")
        card += [f"- config_name: {subset}", "  data_files:", "  - split: train", f"    path: {subset}/train-*.parquet"]
    (root / "README.md").write_text("\n".join(card + ["---", ""]))
    return root


def test_a_hub_dataset_streams_its_subset_and_reads_only_the_rows_taken(tmp_path):
    pytest.importorskip("datasets", reason="the datasets extra (pip install 'memtok[datasets]')")
    folder = hub_folder(tmp_path / "owner" / "corpus", {"en": [TEXTS[:3], TEXTS[3:6]], "es": [TEXTS[6:]]})
    assert read_source(str(folder), subset="es").texts == TEXTS[6:]
    (folder / "en" / "train-00001-of-00002.parquet").write_bytes(b"PAR1 damaged")  # never reached below
    source = read_source(str(folder), subset="en", rows="1:", limit=2)
    assert source.texts == TEXTS[1:3] and source.pinned() == {"rows": "1:", "subset": "en"}
    with pytest.raises(MemtokError, match="could not load dataset"):
        read_source(str(folder), subset="en", rows="2:", limit=3)  # the damaged shard is read now
    with pytest.raises(MemtokError, match="has no column 'chunk'"):
        read_source(str(folder), column="chunk", subset="es")


def test_a_hub_id_with_an_owner_is_a_dataset_not_a_missing_file(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the datasets extra (pip install 'memtok[datasets]')")
    folder = hub_folder(tmp_path / "here", {"plain_text": [TEXTS[:2]]})
    asked = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: asked.append((name, *a, k)) or real(str(folder), *a, **k))
    assert read_source("stanfordnlp/imdb", subset="plain_text").texts == TEXTS[:2]
    assert asked == [("stanfordnlp/imdb", "plain_text", {"split": "train", "streaming": True})]
    with pytest.raises(MemtokError, match="no such file: owner/missing.csv"):
        read_source("owner/missing.csv")


def test_eval_and_encode_corpus_stream_a_hub_datasets_subset(tiny_dir, tmp_path, capsysbinary):
    pytest.importorskip("datasets", reason="the datasets extra (pip install 'memtok[datasets]')")
    folder = hub_folder(tmp_path / "owner" / "corpus", {"en": [TEXTS[:2], TEXTS[2:4]], "es": [TEXTS[6:]]})
    (folder / "en" / "train-00001-of-00002.parquet").write_bytes(b"PAR1 damaged")  # --limit 2 never reads it
    common = ["--subset", "en", "--limit", "2", "-k", "1", "--model", tiny_dir, "--device", "cpu", "--max-steps", "300"]
    code, _, err = run(["eval", str(folder), "--out", str(tmp_path / "eval"), *common], capsysbinary)
    assert code == 0, err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert (summary["overall"]["n"], summary["overall"]["exact"]) == (2, 2)
    assert json.loads((tmp_path / "eval" / "run.json").read_text())["subset"] == "en"
    code, _, err = run(["encode-corpus", str(folder), "--out", str(tmp_path / "store"), *common], capsysbinary)
    assert code == 0, err
