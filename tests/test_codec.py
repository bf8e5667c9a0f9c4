"""Encoding and decoding on the tiny model: round trips, batching, refill, templates."""

import pytest
import torch
from conftest import TEXTS

from memtok import Memory, MemtokError
from memtok.encode import Job, optimise
from memtok.layout import Layout
from memtok.recipes import MEMTOK, MEMTOK_SGD

UNSEEN = "zebra quantum fjord"  # the tiny model never saw it: no single vector makes it exact


def test_round_trip_single_text(tiny_codec):
    mem = tiny_codec.encode(TEXTS[0])
    assert isinstance(mem, Memory)
    assert mem.exact and mem.token_accuracy == 1.0
    assert mem.min_margin >= MEMTOK.min_margin
    assert mem.n_tokens == len(tiny_codec.lm.tokenize(TEXTS[0]))
    assert tiny_codec.decode(mem) == TEXTS[0]


def test_batch_equals_each_text_alone(tiny_codec):
    alone = [tiny_codec.encode(t) for t in TEXTS]
    batched = tiny_codec.encode(TEXTS, batch_size=3)
    assert [m.exact for m in batched] == [True] * len(TEXTS)
    for a, b in zip(alone, batched):
        assert a.steps == b.steps
        torch.testing.assert_close(a.vectors, b.vectors, rtol=1e-4, atol=1e-5)
    assert tiny_codec.decode(batched) == TEXTS


def test_finished_slot_is_refilled_so_a_hard_text_holds_nothing_back(tiny_codec):
    lm = tiny_codec.lm
    recipe = MEMTOK_SGD.replace(max_steps=300)  # on which these texts' step counts make the point
    layout = Layout.build(lm, "{memory}", 1, recipe.bos)
    targets = [tiny_codec.target_ids(t) for t in [UNSEEN] + TEXTS]
    steps_alone = [next(optimise(lm, layout, recipe, [Job(0, t, 1)])).steps for t in targets[1:]]
    infos = []
    jobs = [Job(i, t, 1) for i, t in enumerate(targets)]
    results = list(optimise(lm, layout, recipe, jobs, batch_size=2, on_step=infos.append))
    # The hard text gives up after 300 steps, the easy ones pass through the other slot one after
    # another, each taking exactly the steps it takes alone.
    by_index = {r.key: r for r in results}
    hard = by_index.pop(0)
    assert not hard.converged and hard.steps == 300
    assert {i: r.steps for i, r in by_index.items()} == {i + 1: s for i, s in enumerate(steps_alone)}
    assert all(r.converged for r in by_index.values())
    # Both slots stay busy: the whole job costs at most the easy texts' steps (one check step each),
    # never those plus the hard one's 300.
    assert len(infos) <= sum(steps_alone) + len(steps_alone)
    assert sum(steps_alone) > 300, "the easy texts must outlast the hard one for this test to mean anything"
    assert all(i.active == 2 for i in infos[:300])


def test_jobs_of_different_k_share_a_batch_as_if_alone(tiny_codec):
    lm = tiny_codec.lm
    layout = Layout.build(lm, "{memory}", 1, MEMTOK.bos)
    jobs = [Job(i, tiny_codec.target_ids(t), k) for i, (t, k) in enumerate(zip(TEXTS[:4], (1, 3, 2, 1)))]
    alone = {j.key: next(optimise(lm, layout, MEMTOK, [j])) for j in jobs}
    together = {r.key: r for r in optimise(lm, layout, MEMTOK, jobs, batch_size=4)}
    for key, a in alone.items():
        b = together[key]
        assert a.steps == b.steps and a.converged and b.converged and len(b.memory) == jobs[key].k
        torch.testing.assert_close(a.memory, b.memory, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("template, text", [
    ("the {memory}", " cat sat on the mat."),  # prompt before the memory
    ("{memory}the", " cat ran to the park."),  # prompt between the memory and the text
])
def test_template_places_the_memory_inside_a_prompt(tiny_codec, template, text):
    mem = tiny_codec.encode(text, template=template)
    assert mem.exact and mem.template == template
    lm = tiny_codec.lm
    head, tail = template.split("{memory}")
    assert mem.prefix_ids == [lm.bos_id] + lm.tokenize(head) if head else [lm.bos_id]
    assert mem.infix_ids == (lm.tokenize(tail) if tail else [])
    assert tiny_codec.decode(mem) == text


def test_several_vectors(tiny_codec):
    mem = tiny_codec.encode(TEXTS[4], tokens=3)
    assert mem.vectors.shape == (3, tiny_codec.lm.hidden_size)
    assert mem.exact and tiny_codec.decode(mem) == TEXTS[4]


def test_every_recipe_round_trips(tiny_codec):
    for name in ("paper", "kuratov", "memtok-sgd"):
        mem = tiny_codec.encode(TEXTS[1], recipe=name, max_steps=1500)
        assert mem.recipe["name"] == name
        assert mem.exact, name
        assert tiny_codec.decode(mem) == TEXTS[1]


def test_low_rank_recipe_round_trips_and_batches_as_if_alone(tiny_codec):
    rec = MEMTOK.replace(name="low-rank", optimizer="adam", lr=0.03, rank=8)
    alone = [tiny_codec.encode(t, recipe=rec, tokens=2) for t in TEXTS[:3]]
    batched = tiny_codec.encode(TEXTS[:3], recipe=rec, tokens=2, batch_size=3)
    assert [m.exact for m in batched] == [True] * 3
    for a, b in zip(alone, batched):
        assert a.steps == b.steps
        torch.testing.assert_close(a.vectors, b.vectors, rtol=1e-4, atol=1e-5)
    assert batched[0].recipe["rank"] == 8
    assert tiny_codec.decode(batched) == TEXTS[:3]
    with pytest.raises(MemtokError, match="rank"):
        MEMTOK.replace(rank=-1)


def test_a_text_that_cannot_be_made_exact_is_reported_not_exact(tiny_codec):
    mem = tiny_codec.encode(UNSEEN, max_steps=30)
    assert not mem.exact and mem.steps == 30
    assert tiny_codec.decode(mem) != UNSEEN


@pytest.mark.parametrize("bad, kwargs, message", [
    ("", {}, "empty text"),
    ("x", {"tokens": 70}, "leave no room for text"),  # the tiny model's context is 64
    ("x", {"tokens": "many"}, "number of vectors or 'auto'"),
    ("x", {"segment_tokens": 0}, "at least one token"),
])
def test_bad_texts_are_refused(tiny_codec, bad, kwargs, message):
    with pytest.raises(MemtokError, match=message):
        tiny_codec.encode(bad, **kwargs)


def test_bad_options_are_refused(tiny_codec):
    with pytest.raises(MemtokError, match="exactly once"):
        tiny_codec.encode(TEXTS[0], template="no placeholder")
    with pytest.raises(MemtokError, match="between 1 and 256"):
        tiny_codec.encode(TEXTS[0], tokens=0)
    with pytest.raises(MemtokError, match="unknown recipe"):
        tiny_codec.encode(TEXTS[0], recipe="nope")
    with pytest.raises(MemtokError, match="max steps"):
        tiny_codec.encode(TEXTS[0], max_steps=0)


def test_bf16_autocast_optimises_and_float32_decoding_still_judges(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:3], recipe=MEMTOK.replace(bf16=True), max_steps=300)
    assert all(m.exact and m.recipe["bf16"] is True for m in mems)
    assert tiny_codec.decode(mems) == TEXTS[:3]
