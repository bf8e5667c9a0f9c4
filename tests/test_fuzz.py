"""Property-based fuzzing of the files memtok reads from anywhere: a memory, a store's index and
semantic keys, and a learned start. Whatever the bytes, a command either refuses them with exit 2 and one line
`memtok: error: ...`, or reads them as a memory that decodes to its own text; nothing prints a
wrong text with exit 0. The model is the tiny one, loaded once (the command's own loading is
patched to hand it over), so a few thousand files run in seconds."""

import io
import json
import os
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import TEXTS, run, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memtok.cli.analysis_commands
import memtok.cli.memory_commands
from memtok import EncodeConfig, MemtokError
from memtok.runs.encode_corpus import run_corpus
from memtok.runs.sources import read_source
from memtok.start.start import LearnedStart, find_start
from memtok.start.start_nets import PooledStart

TEXT = TEXTS[3]
BASE = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


# `make test-fast` runs a quarter of the cases (the first ones of the same derandomised sequence);
# `make test`, which CI runs, all of them
SCALE = float(os.environ.get("MEMTOK_FUZZ_SCALE", "1"))


def fuzz(cases: int) -> settings:
    """Hypothesis' settings for `cases` files, the same ones on every run (derandomised)."""
    return settings(BASE, max_examples=max(20, round(cases * SCALE)))


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` with a few bytes changed, a piece cut out, bytes put in, or cut short: where in the
    file is drawn, so the JSON header and the tensors' bytes are both hit."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["flip", "flip", "cut", "insert", "truncate"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if what == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif what == "cut":
            del out[at:at + draw(st.integers(1, 16))]
        elif what == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del out[at:]
    return bytes(out)


def header_edit(data: bytes, edit) -> bytes:
    """The file with its JSON header (safetensors: 8-byte length, then the header) changed by `edit`."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    return len(new).to_bytes(8, "little") + new + data[8 + n:]


def check_refused_or_exact(code: int, out: bytes, err: str, text: str) -> None:
    lines = err.strip().splitlines()
    if code == 0:
        assert out == text.encode(), "exit 0 with a wrong text"
    else:
        assert out == b"" and len(lines) == 1 and lines[0].startswith("memtok: error: "), err
        assert code == 2 or "text_sha256" in lines[0], f"exit {code}: {lines[0]}"  # 1: decoded, not its text
        assert "MEMTOK_DEBUG" not in lines[0], f"an unforeseen failure: {lines[0]}"


@pytest.fixture
def model_given(tiny_codec, monkeypatch):
    """The commands get the tiny model already loaded, whatever they name."""
    monkeypatch.setattr(memtok.cli.memory_commands, "load_codec", lambda model, device: tiny_codec)


@pytest.fixture(scope="module")
def memory_bytes(tiny_codec, tmp_path_factory):
    mem = tiny_codec.encode(TEXT, k=1)
    assert mem.exact
    path = tmp_path_factory.mktemp("good") / "m.safetensors"
    mem.save(path)
    return path.read_bytes()


def test_a_damaged_memory_file_is_refused_or_decodes_its_text(memory_bytes, model_given, tmp_path, capsysbinary):
    path = tmp_path / "m.safetensors"

    @fuzz(800)
    @given(damaged(memory_bytes))
    def check(data):
        path.write_bytes(data)
        check_refused_or_exact(*run(["decode", str(path), "--model", "tiny"], capsysbinary), TEXT)
        code, out, err = run(["info", str(path), "--json"], capsysbinary)
        assert code in (0, 2) and (code == 2) == (out == b""), err

    check()


VALUES = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=12)


def test_a_memory_header_with_any_field_changed_is_refused_or_decodes_its_text(memory_bytes, model_given, tmp_path,
                                                                              capsysbinary):
    path = tmp_path / "m.safetensors"
    fields = sorted(json.loads(header_edit(memory_bytes, lambda h: None)[8:].split(b"}}", 1)[0] + b"}}")
                    ["__metadata__"])

    @fuzz(300)
    @given(st.sampled_from(fields), st.text(max_size=40) | VALUES.map(json.dumps))
    def check(field, value):
        def edit(header):
            meta = header["__metadata__"]
            if field == "memtok":  # the memory's own JSON header: one of its fields
                inner = json.loads(meta["memtok"])
                inner[random.Random(value).choice(sorted(inner))] = json.loads(value) if _is_json(value) else value
                meta["memtok"] = json.dumps(inner)
            else:
                meta[field] = value
        path.write_bytes(header_edit(memory_bytes, edit))
        check_refused_or_exact(*run(["decode", str(path), "--model", "tiny"], capsysbinary), TEXT)

    check()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@pytest.fixture(scope="module")
def store(tiny_codec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-store")
    data = write_csv(folder / "d.csv", TEXTS[:3])
    run_corpus(tiny_codec, read_source(str(data)), folder / "store", EncodeConfig(k=1), show_progress_bar=False)
    return folder / "store"


COLUMNS = ("id", "row", "shard", "status", "error")


def test_a_store_index_with_any_cell_changed_is_refused_or_decodes_its_texts(store, model_given, capsysbinary):
    index = store / "index.parquet"
    rows = pq.read_table(index).to_pylist()
    good = index.read_bytes()

    @fuzz(150)
    @given(st.integers(0, len(rows) - 1), st.sampled_from([c for c in COLUMNS if c in rows[0]]),
           st.none() | st.text(max_size=24) | st.sampled_from(["000000001", "../index.parquet", "r0-00000.safetensors",
                                                               "r0-00001.safetensors", "exact", "failed"]))
    def check(i, column, value):
        changed = [dict(r) for r in rows]
        changed[i][column] = value if column != "row" else (None if value is None else len(str(value)))
        buf = io.BytesIO()
        try:
            pq.write_table(pa.Table.from_pylist(changed), buf)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return  # no parquet file holds it
        index.write_bytes(buf.getvalue())
        try:
            for j, text in enumerate(TEXTS[:3]):
                result = run(["decode", str(store), "--id", f"{j:09d}", "--model", "tiny"], capsysbinary)
                check_refused_or_exact(*result, text)
        finally:
            index.write_bytes(good)

    check()


def test_damaged_semantic_keys_are_refused_or_rank_the_stores_memories(tiny_codec, monkeypatch, tmp_path_factory,
                                                                        capsysbinary):
    monkeypatch.setattr(memtok.cli.analysis_commands, "load_codec", lambda model, device: tiny_codec)
    folder = tmp_path_factory.mktemp("fuzz-keys")
    run_corpus(tiny_codec, read_source(str(write_csv(folder / "d.csv", TEXTS[:3]))), folder / "store",
               EncodeConfig(k=1, semantic="self"), show_progress_bar=False)
    keys = folder / "store" / "keys.safetensors"
    good = keys.read_bytes()

    @fuzz(200)
    @given(damaged(good))
    def check(data):
        keys.write_bytes(data)
        code, out, err = run(["search", str(folder / "store"), TEXTS[1], "--method", "vector", "--json", "-n", "3",
                              "--model", "tiny"], capsysbinary)
        if code == 0:  # keys that still read as keys rank ids of the store's own form
            assert all(json.loads(line)["id"].isdigit() for line in out.decode().splitlines()), out
        else:
            lines = err.strip().splitlines()
            assert code == 2 and out == b"" and len(lines) == 1 and lines[0].startswith("memtok: error: "), err
            assert "MEMTOK_DEBUG" not in lines[0], f"an unforeseen failure: {lines[0]}"

    check()


@pytest.fixture(scope="module")
def start_bytes(tiny_codec, tmp_path_factory):
    """A start for the tiny model (untrained: what matters is what its file holds)."""
    lm = tiny_codec.lm
    torch.manual_seed(0)
    net = PooledStart(lm.hidden_size, (0, 1, 2), 16)
    path = tmp_path_factory.mktemp("start") / "start.safetensors"
    LearnedStart(net, lm.fingerprint, "fuzz@0", {}).save(path)
    return path.read_bytes()


def test_a_damaged_start_file_is_refused_or_used_as_a_start(start_bytes, tiny_codec, tmp_path, monkeypatch):
    """A start file is looked for among others and read by every encode: a damaged one is passed
    over or refused with one line, never a crash, and an encode from it still ends exact."""
    folder = tmp_path / "starts"
    folder.mkdir()
    monkeypatch.setenv("MEMTOK_STARTS", str(folder))
    path = folder / "start.safetensors"
    first_layer = b'"layers":"[0, 1, 2]"'
    assert first_layer.replace(b'"', b'\\"') in start_bytes or first_layer in start_bytes

    @fuzz(250)
    @given(damaged(start_bytes) | st.sampled_from(["[0, 1, 7]", "[-1]", "[]", "x", "[0.5]"]).map(
        lambda layers: header_edit(start_bytes, lambda h: h["__metadata__"].update(layers=layers))))
    def check(data):
        path.write_bytes(data)
        try:
            start = find_start(tiny_codec.lm)
        except MemtokError as exc:
            assert str(exc).count("\n") == 0
            return
        if start is not None:
            mem = tiny_codec.encode(TEXT, k=1, recipe="memtok:init=learned", max_steps=300)
            assert mem.exact and tiny_codec.decode(mem) == TEXT

    check()
