"""`memtok encode-corpus`: a resumable store, two processes under torchrun, reading back."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import DEVICE, TEXTS, finish, memtok_cmd, run, write_csv

from memtok import MemoryCodec, ModelMismatchError
from memtok.store import MemoryStore

HARD = "zebra quantum fjord"
# Two texts no memory can make exact (recorded as such) and one too long for the tiny model's context.
CORPUS = TEXTS + [HARD, "", TEXTS[0] + " " + TEXTS[1]]  # "": a row that cannot be encoded


def check_store(store_dir, codec, n):
    store = MemoryStore(store_dir)
    assert len(store) == n
    index = pq.read_table(store_dir / "index.parquet").to_pylist()
    assert [r["row"] for r in index] == list(range(n))  # every row once
    for r in index:
        text = CORPUS[r["row"]]
        if r["status"] == "failed":
            assert "empty text" in r["error"]
        elif r["status"] == "exact":
            assert store.decode(codec, r["id"]) == text
    return index


@pytest.mark.slow  # a subprocess
def test_two_processes_under_torchrun_build_one_store(tiny_dir, tiny_codec, tmp_path):
    data = write_csv(tmp_path / "c.csv", CORPUS)
    store_dir = tmp_path / "store"
    s = finish(memtok_cmd("encode-corpus", str(data), "--out", str(store_dir), "--model", tiny_dir, "--max-steps",
                          "400", "--shard-size", "3", "--keep-text", "--json", "--device", DEVICE, nproc=2))
    assert s["world_size"] == 2 and s["total"] == len(CORPUS)
    assert (s["exact"], s["failed"]) == (len(TEXTS), 1)
    index = check_store(store_dir, tiny_codec, len(CORPUS))
    assert {r["shard"].split("-")[0] for r in index} == {"r0", "r1"}  # each rank wrote its own shards
    assert index[0]["text"] == CORPUS[0]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "terminated"])
@pytest.mark.slow  # a subprocess
def test_a_stopped_run_resumes_without_redoing_or_losing_texts(stop, tiny_dir, tiny_codec, tmp_path):
    corpus_rows = [t for pair in zip(TEXTS, [HARD] * len(TEXTS)) for t in pair]
    data = write_csv(tmp_path / "c.csv", corpus_rows)
    store_dir = tmp_path / "store"
    args = memtok_cmd("encode-corpus", str(data), "--out", str(store_dir), "--model", tiny_dir, "-k", "1",
                      "--max-steps", "150", "--batch-size", "2", "--shard-size", "3", "--json")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = store_dir / "parts" / "r0"
    deadline = time.time() + 600  # generous: a loaded machine is slow to write its first parts
    while time.time() < deadline and len(list(parts.glob("*.safetensors")) if parts.exists() else []) < 2:
        time.sleep(0.01)
    p.send_signal(stop)
    p.wait()
    assert not (store_dir / "index.parquet").exists(), "the kill must land mid-run"
    in_flight = store_dir / "in-flight-r0.safetensors"
    # SIGTERM saves the texts being optimised (a hard row at least); SIGKILL gives no chance to
    assert in_flight.exists() == (stop == signal.SIGTERM)
    s = finish(args)
    assert not in_flight.exists()
    assert 2 <= s["resumed"] < len(corpus_rows) and s["encoded_now"] == len(corpus_rows) - s["resumed"]
    store = MemoryStore(store_dir)
    assert sorted(int(i) for i in store) == list(range(len(corpus_rows)))
    for i in store:
        if store.record(i)["exact"]:
            assert store.decode(tiny_codec, i) == corpus_rows[int(i)]
    assert not list(parts.glob("*.safetensors"))  # all packed into shards


def test_store_decode_cli_and_fingerprint_check(tiny_dir, other_tiny_dir, tmp_path, capsysbinary):
    data = write_csv(tmp_path / "c.csv", TEXTS[:3])
    store_dir = tmp_path / "store"
    code, out, err = run(["encode-corpus", str(data), "--out", str(store_dir), "--model", tiny_dir, "--json",
                          "--compact"], capsysbinary)  # in this process: the subprocess tests are the slow ones
    assert code == 0, err
    summary = json.loads(out.decode().strip().splitlines()[-1])
    index = pq.read_table(store_dir / "index.parquet").to_pylist()
    assert summary["payload_bytes"] == sum(r["payload_bytes"] for r in index) > 0
    # a corpus compressor shares context across texts; the summary says so by giving both
    assert 0 < summary["zstd_bytes_together"] < summary["zstd_bytes_each"] == sum(r["zstd_bytes"] for r in index)
    assert MemoryStore(store_dir)["000000000"].storage_dtype == "int4"
    code, out, err = run(["decode", str(store_dir), "--id", "000000001"], capsysbinary)  # the model the store names
    assert code == 0 and out == TEXTS[1].encode(), err
    outdir = tmp_path / "texts"
    code, _, err = run(["decode", str(store_dir), "--all", "-o", str(outdir)], capsysbinary)
    assert code == 0, err
    assert [(outdir / f"{i:09d}.txt").read_text() for i in range(3)] == TEXTS[:3]
    code, _, err = run(["decode", str(store_dir), "--id", "nope"], capsysbinary)
    assert code == 2 and "no memory with id" in err
    other = MemoryCodec.from_pretrained(other_tiny_dir, device=DEVICE)
    with pytest.raises(ModelMismatchError):
        MemoryStore(store_dir).decode(other, "000000000")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in Linux's /proc")
@pytest.mark.slow  # a subprocess
def test_a_killed_torchrun_launcher_leaves_no_worker_and_the_store_reopens(tiny_dir, tmp_path):
    data = write_csv(tmp_path / "c.csv", [HARD] * 6)
    store_dir = tmp_path / "store"
    args = memtok_cmd("encode-corpus", str(data), "--out", str(store_dir), "--model", tiny_dir, "-k", "1",
                      "--max-steps", "100000", "--batch-size", "1", nproc=2)
    launcher = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (store_dir / "parts").exists() and time.monotonic() < deadline:  # the workers are encoding
        time.sleep(0.5)
    workers = _children(launcher.pid)
    assert len(workers) == 2 and (store_dir / "parts").exists()
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 60
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(map(_alive, workers))
    from memtok.files import lock_folder

    with lock_folder(store_dir):  # nothing holds the store: a restart may begin at once
        pass
