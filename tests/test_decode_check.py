"""Decoding checks itself: the decoded text's sha256 must be the one the memory recorded."""

import dataclasses

import pytest
import torch
from helpers import TEXTS, finish, memtok_cmd, run, write_csv

from memtok import Memory
from memtok.errors import DecodeMismatchError


@pytest.fixture(scope="module")
def memory(tiny_codec):
    mem = tiny_codec.encode(TEXTS[2])
    assert mem.exact
    return mem


def tampered(mem: Memory) -> Memory:
    """The same header (it still says exact), with vectors that now decode to something else."""
    noise = torch.randn(mem.vectors.shape, generator=torch.Generator().manual_seed(1))
    return dataclasses.replace(mem, vectors=mem.vectors + 10 * noise.to(mem.vectors) * mem.vectors.std())


def test_codec_decode_raises_on_a_mismatch_and_keeps_the_text(tiny_codec, memory):
    bad = tampered(memory)
    assert bad.exact  # the header lies
    with pytest.raises(DecodeMismatchError, match="does not match") as caught:
        tiny_codec.decode(bad)
    assert caught.value.text != TEXTS[2]
    assert tiny_codec.decode(bad, check=False) == caught.value.text
    assert tiny_codec.decode(memory) == TEXTS[2]


def test_decoding_a_list_says_which_memories_did_not_match_and_keeps_every_text(tiny_codec, memory):
    good = tiny_codec.encode(TEXTS[3])
    with pytest.raises(DecodeMismatchError, match=r"1 of 3 decoded texts \(at 1\) do not match") as caught:
        tiny_codec.decode([memory, tampered(memory), good])
    assert caught.value.mismatched == [1]
    assert caught.value.texts == [TEXTS[2], caught.value.text, TEXTS[3]] and caught.value.text != TEXTS[2]


def test_memories_compare_by_their_vectors_and_header_and_print_short(memory, tmp_path):
    again = Memory.load(memory.save(tmp_path / "m.safetensors"))
    assert again == memory and again in [tampered(memory), memory] and tampered(memory) != memory
    assert len(repr(memory)) < 200 and repr(memory).startswith(f"Memory(model={memory.model_name!r}, k=1")


def test_decode_command_writes_nothing_on_a_mismatch(tiny_codec, memory, tmp_path, capsysbinary):
    path = tampered(memory).save(tmp_path / "bad.safetensors")
    out = tmp_path / "out.txt"
    code, stdout, err = run(["decode", str(path), "-o", str(out)], capsysbinary)
    assert code == 1 and stdout == b"" and not out.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not match the memory's text_sha256" in lines[0] and "device" in lines[0]
    code, _, err = run(["decode", str(path), "-o", str(out), "--unchecked"], capsysbinary)
    assert code == 1 and out.read_text() != TEXTS[2]


@pytest.mark.slow  # a subprocess
def test_store_decode_checks_every_memory(tiny_dir, tiny_codec, tmp_path, capsysbinary):
    from memtok.store import MemoryStore
    from memtok.store.shards import write_shard

    data = write_csv(tmp_path / "c.csv", TEXTS[:3])
    store_dir = tmp_path / "store"
    finish(memtok_cmd("encode-corpus", str(data), "--out", str(store_dir), "--model", tiny_dir, "--json"))
    store = MemoryStore(store_dir)
    shard = store_dir / "shards" / store.record("000000001")["shard"]
    mems = {i: store[i] for i in store}
    mems["000000001"] = tampered(mems["000000001"])
    write_shard(shard, mems, {})  # the same shard, one memory's vectors altered
    code, stdout, err = run(["decode", str(store_dir), "--id", "000000001"], capsysbinary)
    assert code == 1 and stdout == b"" and "does not match" in err
    outdir = tmp_path / "texts"
    code, _, err = run(["decode", str(store_dir), "--all", "-o", str(outdir)], capsysbinary)
    assert code == 1 and "1 memories did not decode" in err and "000000001" in err
    assert sorted(p.name for p in outdir.iterdir()) == ["000000000.txt", "000000002.txt"]
    assert (outdir / "000000002.txt").read_text() == TEXTS[2]
