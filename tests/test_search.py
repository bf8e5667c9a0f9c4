"""`memtok search` on the tiny model: ranked hits, read-only, both methods, one-line errors."""

import json

import pytest
from helpers import TEXTS, run, write_csv

from memtok import EncodeConfig, MemtokError
from memtok.runs.encode_corpus import run_corpus
from memtok.runs.sources import read_source
from memtok.store import MemoryStore


@pytest.fixture(scope="module")
def store(tiny_codec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    data = write_csv(folder / "d.csv", TEXTS)
    run_corpus(tiny_codec, read_source(str(data)), folder / "store", EncodeConfig(k=1), show_progress_bar=False)
    return folder / "store"


def test_likelihood_is_the_models_own_score_of_the_query_after_each_memory(tiny_codec, store):
    """Batched over the store, each score is what scoring the query alone after that memory gives.
    float32 matmuls batched or not may round differently in the last bits of logits of order 10: a
    mean over a few tokens agrees to well within 1e-4."""
    from memtok.decode.score import score
    from memtok.store.search import likelihood_scores

    memories = MemoryStore(store)
    mems = [memories[i] for i in memories]
    query = "ran to the park"
    ids = tiny_codec.lm.tokenize(query)
    batched = likelihood_scores(tiny_codec, mems, query, batch_size=3, scoring="mean")
    for mem, got in zip(mems, batched):
        alone = score(tiny_codec.lm, mem.layout, ids, tiny_codec.inputs(mem.vectors, mem.storage_dtype))
        assert got == pytest.approx(-alone.nats / len(ids), abs=1e-4)
    hits = memories.search(tiny_codec, query, top_n=3, scoring="mean")
    assert len(hits) == 3 and [h.score for h in hits] == sorted(batched, reverse=True)[:3]
    skipped = likelihood_scores(tiny_codec, mems, query, batch_size=3)  # the default: skip1
    for mem, got in zip(mems, skipped):  # the first token read, not scored
        layout, vectors = mem.layout, tiny_codec.inputs(mem.vectors, mem.storage_dtype)
        rest = score(tiny_codec.lm, layout, ids, vectors).nats - score(tiny_codec.lm, layout, ids[:1], vectors).nats
        assert got == pytest.approx(-rest / (len(ids) - 1), abs=1e-4)


def test_standardised_scoring_ignores_what_every_memory_predicts_alike():
    """`z` ranks by how far each token's log-probability stands from the store's: a token all
    segments predict alike adds nothing, and scaling or shifting one token's column changes nothing."""
    import torch

    from memtok.store.search import SCORINGS, best_per_memory

    logp = torch.tensor([[-1.0, -5.0, -2.0], [-3.0, -5.0, -1.0], [-2.0, -5.0, -4.0]])
    z = SCORINGS["z"](logp)
    moved = logp.clone()
    moved[:, 0] = moved[:, 0] * 4 - 7
    assert torch.allclose(SCORINGS["z"](moved), z, atol=1e-6)
    assert torch.allclose(z, SCORINGS["z"](logp[:, [0, 2]]) * 2 / 3, atol=1e-6)
    assert best_per_memory([0, 1, 1], z, 2) == [z[0].item(), max(z[1:]).item()]


def test_hits_decode_and_the_vector_method_ranks_every_memory(tiny_codec, store):
    memories = MemoryStore(store)
    hits = memories.search(tiny_codec, TEXTS[3], top_n=2, decode=True)
    assert len(hits) == 2 and all(h.text == TEXTS[int(h.id)] for h in hits)
    with pytest.raises(MemtokError, match="a vector search or an embedding needs memories made with semantic=TEACHER"):
        memories.search(tiny_codec, TEXTS[3], method="vector")
    with pytest.raises(MemtokError, match="unknown search method"):
        memories.search(tiny_codec, "x", method="bm25")
    with pytest.raises(MemtokError, match="empty query"):
        memories.search(tiny_codec, "  ")
    with pytest.raises(MemtokError, match="unknown scoring"):
        memories.search(tiny_codec, "x", scoring="max")


def test_a_hit_whose_decoded_text_does_not_match_comes_back_without_it(tiny_codec, store, monkeypatch):
    memories = MemoryStore(store)
    real = tiny_codec.decode
    monkeypatch.setattr(tiny_codec, "decode", lambda mems, **kw: ["not the text"] + real(mems[1:], **kw))
    first, second = memories.search(tiny_codec, TEXTS[3], top_n=2, decode=True)
    assert (first.text, first.mismatch) == (None, True)
    assert (second.text, second.mismatch) == (TEXTS[int(second.id)], False)


def test_search_command_prints_ranked_json_and_changes_nothing(tiny_dir, store, capsysbinary):
    before = {p.name: p.stat().st_mtime_ns for p in store.rglob("*")}
    code, out, err = run(["search", str(store), TEXTS[5], "-n", "2", "--json", "--decode", "--scoring", "z",
                          "--model", tiny_dir], capsysbinary)
    assert code == 0, err
    hits = [json.loads(line) for line in out.decode().splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and "1 query, 2 of 8 memories each" in err
    assert all(h["text"] == TEXTS[int(h["id"])] for h in hits)  # each hit decoded, the store's row
    assert {p.name: p.stat().st_mtime_ns for p in store.rglob("*")} == before
    code, _, err = run(["search", str(store.parent), "x", "--model", tiny_dir], capsysbinary)
    assert code == 2 and "not a finished memtok store" in err


def test_search_takes_many_queries_from_standard_input_with_one_model_load(tiny_dir, store, capsysbinary,
                                                                           monkeypatch):
    queries = f"{TEXTS[1]}\n\n{TEXTS[6]}\n".encode()
    code, out, err = run(["search", str(store), "-", "-n", "1", "--json", "--model", tiny_dir], capsysbinary,
                         stdin=queries, monkeypatch=monkeypatch)
    assert code == 0 and "2 queries, 1 of 8 memories each" in err, err
    hits = [json.loads(line) for line in out.decode().splitlines()]
    assert [h["query"] for h in hits] == [TEXTS[1], TEXTS[6]] and all(h["rank"] == 1 for h in hits)
    code, _, err = run(["search", str(store), "-", "--model", tiny_dir], capsysbinary, stdin=b"\n", monkeypatch=monkeypatch)
    assert code == 2 and "standard input holds no query" in err
