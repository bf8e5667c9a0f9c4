"""Semantic memories: still exact, their vectors carrying their text's code, and a vector search
that finds a text's memory from its own words without texts or decoding."""

import json
import shutil

import pytest
import torch
from helpers import TEXTS, run, semantic_store_in, write_csv
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from memtok import EncodeConfig, Memory, MemtokError
from memtok.runs.encode_corpus import run_corpus
from memtok.runs.sources import read_source
from memtok.start.semantic import SemanticSpace
from memtok.store import MemoryStore
from memtok.store.keys import KEYS, read_keys


@pytest.fixture(scope="module")
def semantic_store(tiny_codec, tmp_path_factory):
    return semantic_store_in(tiny_codec, tmp_path_factory.mktemp("semantic"), "self")


def test_a_semantic_memory_is_exact_and_holds_its_texts_code(tiny_codec, tmp_path):
    mems = tiny_codec.encode(TEXTS, k=1, batch_size=8, semantic="self")
    space = SemanticSpace.of(tiny_codec.lm, "self")
    assert all(m.exact for m in mems) and tiny_codec.decode(mems) == TEXTS
    codes = space.codes(tiny_codec.lm, [tiny_codec.lm.tokenize(t) for t in TEXTS])
    found = torch.stack([space.component(m.vectors) for m in mems])
    # the component is the code up to float32 rounding of the projections: d products of |v| each
    tolerance = tiny_codec.lm.hidden_size * torch.finfo(torch.float32).eps * max(float(m.vectors.abs().max())
                                                                                   for m in mems)
    assert torch.allclose(found, codes, rtol=0, atol=tolerance)
    mems[0].save(tmp_path / "m.safetensors")
    assert Memory.load(tmp_path / "m.safetensors").semantic == space.describe() == mems[0].semantic
    assert tiny_codec.encode(TEXTS[0], k=1).semantic is None


def test_a_semantic_memory_is_a_sentence_embedding_and_a_plain_one_is_refused(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:3], k=1, semantic="self")
    space = SemanticSpace.of(tiny_codec.lm, "self")
    codes = torch.nn.functional.normalize(space.codes(tiny_codec.lm, [tiny_codec.lm.tokenize(t) for t in TEXTS[:3]]))
    found = torch.stack([tiny_codec.embedding(m) for m in mems])
    # unit vectors whose components come from d products of float32 numbers: rounding of d * eps each
    tolerance = tiny_codec.lm.hidden_size * torch.finfo(torch.float32).eps
    assert torch.allclose(found, codes.cpu(), rtol=0, atol=tolerance) and found.shape == (3, space.rank)
    assert tiny_codec.similarity(mems[0], mems[1]) == pytest.approx(float(codes[0] @ codes[1]), abs=tolerance)
    assert tiny_codec.similarity(mems[0], mems[0]) == pytest.approx(1.0, abs=tolerance)
    with pytest.raises(MemtokError, match="needs memories made with semantic=TEACHER; these are plain"):
        tiny_codec.similarity(mems[0], tiny_codec.encode(TEXTS[0], k=1))


def test_the_vector_method_finds_a_texts_memory_from_its_own_words(tiny_codec, semantic_store):
    store = MemoryStore(semantic_store)
    for i, text in enumerate(TEXTS):
        hits = store.search(tiny_codec, text, top_n=3, method="vector")
        assert len(hits) == 3 and hits[0].id == f"{i:09d}" and hits[0].score > hits[1].score


@pytest.mark.parametrize("keys_file", [True, False])
def test_a_stores_vectors_go_into_faiss_and_find_what_its_own_search_finds(tiny_codec, semantic_store, tmp_path,
                                                                            keys_file):
    faiss = pytest.importorskip("faiss", reason="the bench extra (pip install 'memtok[bench]')")
    root = tmp_path / "store"
    shutil.copytree(semantic_store, root)
    if not keys_file:
        (root / KEYS).unlink(missing_ok=True)  # then read from the memories themselves
    store = MemoryStore(root)
    ids, keys = store.vectors(tiny_codec)
    assert len(ids) == len(keys) and set(ids) == set(store)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys.numpy())
    for text in TEXTS:
        _, found = index.search(store.query_vector(tiny_codec, text)[None].numpy(), 1)
        assert ids[found[0][0]] == store.search(tiny_codec, text, top_n=1, method="vector")[0].id


def test_the_search_command_refuses_memories_made_without_semantic(tiny_dir, tiny_codec, semantic_store, tmp_path,
                                                                   capsysbinary):
    code, out, err = run(["search", str(semantic_store), TEXTS[2], "--method", "vector", "--json", "-n", "1",
                          "--model", tiny_dir], capsysbinary)
    assert code == 0 and json.loads(out.decode())["id"] == "000000002", err
    data = write_csv(tmp_path / "d.csv", TEXTS[:2])
    run_corpus(tiny_codec, read_source(str(data)), tmp_path / "plain", EncodeConfig(k=1), show_progress_bar=False)
    code, out, err = run(["search", str(tmp_path / "plain"), "x", "--method", "vector", "--model", tiny_dir],
                         capsysbinary)
    assert code == 2 and out == b"" and err.count("\n") == 1 and "made with --semantic" in err


def test_a_stores_keys_rank_as_its_memories_do_and_no_memory_is_read(tiny_codec, semantic_store, tmp_path,
                                                                     monkeypatch):
    copy = tmp_path / "store"
    shutil.copytree(semantic_store, copy)
    (copy / KEYS).unlink()  # a store without keys: the memories are read and their keys made there
    from_memories = [MemoryStore(copy).search(tiny_codec, t, top_n=len(TEXTS), method="vector") for t in TEXTS]
    monkeypatch.setattr(MemoryStore, "__getitem__", lambda *_: pytest.fail("a memory was read"))
    from_keys = [MemoryStore(semantic_store).search(tiny_codec, t, top_n=len(TEXTS), method="vector") for t in TEXTS]
    assert from_keys == from_memories  # the same keys, bit for bit: the same ids and scores
    rows, keys, _ = read_keys(semantic_store, tiny_codec)
    assert sorted(rows.tolist()) == list(range(len(TEXTS)))
    assert keys.shape[1] == SemanticSpace.of(tiny_codec.lm, "self").rank


@pytest.mark.parametrize("damage", ["fingerprint", "space", "truncated"])
def test_keys_of_another_model_or_space_or_damaged_are_refused_with_one_line(tiny_dir, semantic_store, tmp_path,
                                                                           capsysbinary, damage):
    copy = tmp_path / "store"
    shutil.copytree(semantic_store, copy)
    path = copy / KEYS
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        tensors, meta = load_file(path), safe_open(str(path), framework="pt").metadata()
        meta["model_fingerprint" if damage == "fingerprint" else "space"] = \
            "0" * 64 if damage == "fingerprint" else json.dumps({**json.loads(meta["space"]), "seed": 1})
        save_file(tensors, path, meta)
    code, out, err = run(["search", str(copy), TEXTS[0], "--method", "vector", "--model", tiny_dir], capsysbinary)
    assert code == 2 and out == b"" and err.count("\n") == 1 and err.startswith("memtok: error:"), err
