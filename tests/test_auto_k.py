"""`k="auto"` and segments: the fewest vectors that make a text exact, and texts cut into pieces."""

from __future__ import annotations

import pytest
from helpers import HARD_FOR_ONE, LINES, SGD, TEXTS

import memtok.encode.auto_k
from memtok.encode.auto_k import KPlanner
from memtok.encode.segment import split_text
from memtok.format.memory import Memory


def test_auto_grows_to_the_first_k_that_is_exact(tiny_codec):
    # Each try below the largest K gets a quarter of the 200 steps; one vector cannot do it in 50.
    assert not tiny_codec.encode(HARD_FOR_ONE, k=1, max_steps=50, recipe=SGD).exact
    mem = tiny_codec.encode(HARD_FOR_ONE, k="auto", max_steps=200, recipe=SGD)
    assert mem.exact and tiny_codec.decode(mem) == HARD_FOR_ONE
    tried = mem.segments[0]["tried"]
    assert tried[0] == 1 and tried[-1] == mem.k > 1
    assert all(not tiny_codec.encode(HARD_FOR_ONE, k=k, max_steps=50, recipe=SGD).exact for k in tried[:-1])


def test_auto_shrinks_from_a_high_guess_to_the_smallest_k(tiny_codec, monkeypatch):
    # A prior that thinks a vector holds almost nothing guesses K = 3 for a text one vector holds.
    text = TEXTS[0]
    monkeypatch.setattr(memtok.encode.auto_k, "PRIOR_NATS_PER_DIM", 0.01)
    mem = tiny_codec.encode(text, k="auto", max_steps=200, recipe=SGD)
    assert mem.exact and mem.k == 1
    assert mem.segments[0]["tried"][0] > 1 and mem.segments[0]["tried"] == sorted(mem.segments[0]["tried"], reverse=True)


def test_planner_decisions(monkeypatch):
    monkeypatch.setattr(memtok.encode.auto_k, "PRIOR_NATS_PER_DIM", 0.2)
    planner = KPlanner(hidden_size=100, max_steps=400, max_k=8)  # prior: 20 nats per vector
    assert planner.first(5.0) == 1 and planner.first(61.0) == 3
    assert planner.steps(3) == 100 and planner.steps(8) == 400
    assert planner.decide({2: False}, 2, remaining_nats=50.0) == 4  # the nats left call for two more
    assert planner.decide({2: False}, 2, remaining_nats=1.0) == 3
    assert planner.decide({3: True}, 3, 0.0) == 2  # passed: is one fewer enough?
    assert planner.decide({3: True, 2: False}, 2, 9.0) is None  # no: 3 is the smallest
    assert planner.decide({1: True}, 1, 0.0) is None
    assert planner.decide({8: False}, 8, 99.0) is None  # out of vectors
    planner.learn(50.0, {3: True, 2: False})
    assert planner.nats_per_vector == pytest.approx(20.0)  # 50 nats / 2.5 vectors


def test_split_text_cuts_at_the_coarsest_boundary_and_keeps_every_byte(tiny_codec):
    text = "the cat sat on the mat. the cat ran to the park.\n\na dog ran in the park. " * 3
    for budget in (4, 9, 20, 40):
        pieces = split_text(tiny_codec.lm, text, budget)
        assert "".join(pieces) == text
        assert all(len(tiny_codec.lm.tokenize(p)) <= budget for p in pieces)
    # A paragraph (17 tokens) fills at least half of 20: the cut falls after its blank line. It
    # fills less than half of 40, so there the cut falls at a sentence end instead.
    assert split_text(tiny_codec.lm, text, 20)[0] == "the cat sat on the mat. the cat ran to the park.\n\n"
    assert split_text(tiny_codec.lm, text, 40)[0].endswith("the cat sat on the mat.")
    # spaces stay with the next word
    assert all(not p.endswith(" ") for p in split_text(tiny_codec.lm, text, 9)[:-1])


def test_a_text_longer_than_the_context_is_cut_into_segments_that_decode_back(lines_codec, tmp_path):
    text = "\n".join(LINES)
    assert len(lines_codec.target_ids(text)) + 2 > lines_codec.lm.context_length
    mem = lines_codec.encode(text, k=1, max_steps=300)
    assert len(mem.segments) == len(LINES) and mem.k == len(LINES)
    assert mem.exact and mem.n_tokens == sum(s["tokens"] for s in mem.segments)
    loaded = Memory.load(mem.save(tmp_path / "lines.safetensors"))
    assert loaded.segments == mem.segments
    assert lines_codec.decode(loaded) == text


def test_segment_tokens_cuts_a_text_that_would_fit(tiny_codec):
    text = " ".join(TEXTS[:3])
    assert len(tiny_codec.encode(text, k=1, max_steps=1).segments) == 1
    mem = tiny_codec.encode(text, k=1, max_steps=1, segment_tokens=10)
    assert len(mem.segments) == 3 and all(s["tokens"] <= 10 for s in mem.segments)
    assert mem.n_tokens == len(tiny_codec.lm.tokenize(text)) and mem.k == 3
