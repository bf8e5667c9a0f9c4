"""Encoding and decoding on the tiny model: round trips, batching, refill, templates."""

import pytest
import torch
from helpers import TEXTS, bits_on_cpu

from memtok import EncodeConfig, Memory, MemoryCodec, MemtokError
from memtok.decode.greedy import greedy
from memtok.encode.jobs import Job
from memtok.encode.optimise import optimise
from memtok.encode.resolved import resolve
from memtok.model.layout import Layout
from memtok.model.loading import load
from memtok.settings.recipes import MEMTOK, MEMTOK_SGD

UNSEEN = "zebra quantum fjord"  # the tiny model never saw it: no single vector makes it exact


def test_round_trip_single_text(tiny_codec):
    mem = tiny_codec.encode(TEXTS[0])
    assert isinstance(mem, Memory)
    assert mem.exact and mem.token_accuracy == 1.0
    assert mem.min_margin >= MEMTOK.min_margin
    assert mem.n_tokens == len(tiny_codec.lm.tokenize(TEXTS[0]))
    assert tiny_codec.decode(mem) == TEXTS[0]


def same_outcome(codec, a, b) -> None:
    """Batched and alone are the same optimisation up to float rounding, which hundreds of steps can
    grow far past any fixed tolerance on the vectors (1e-4 seen on one CPU, 1e-6 on another). What
    the property is about: the same number of steps, both exact, the same decoded ids."""
    assert a.steps == b.steps and a.exact and b.exact
    ids = [greedy(codec.lm, m.layout, m.vectors, m.n_tokens + 1) for m in (a, b)]
    assert ids[0] == ids[1] and ids[0][-1] == codec.lm.eos_id


@bits_on_cpu
def test_batch_equals_each_text_alone(tiny_codec):
    alone = [tiny_codec.encode(t) for t in TEXTS]
    batched = tiny_codec.encode(TEXTS, batch_size=3)
    for a, b in zip(alone, batched):
        same_outcome(tiny_codec, a, b)
    assert tiny_codec.decode(batched) == TEXTS


def test_padding_leaves_each_texts_logits_as_alone(tiny_codec):
    """One forward pass, padded batch against each row alone. Only the summation order of the matrix
    products differs, so the tolerance comes from float32 rounding: a dot product of length n is off
    by at most n * eps relative to the sum of its terms' magnitudes; we allow that for the longest
    reduction (the MLP's inner size), once per layer and once for the output head, on the scale of
    the logits."""
    lm = tiny_codec.lm
    cfg = lm.model.config
    layout = Layout.build(lm, "{memory}", 1, MEMTOK.bos)
    rows = [layout.inputs(lm, lm.embedding_mean[None]) for _ in TEXTS[:3]]
    rows = [torch.cat([c, lm.embed(torch.tensor(lm.tokenize(t)))]) for c, t in zip(rows, TEXTS[:3])]
    batch = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(batch.shape[1])[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    with torch.no_grad():
        together = lm.model(inputs_embeds=batch, attention_mask=mask).logits
        for j, r in enumerate(rows):
            alone = lm.model(inputs_embeds=r[None]).logits[0]
            n = max(cfg.intermediate_size, cfg.hidden_size)
            tol = (cfg.num_hidden_layers + 1) * n * torch.finfo(torch.float32).eps * float(alone.abs().max())
            torch.testing.assert_close(together[j, :len(r)], alone, rtol=0, atol=tol)


def test_finished_slot_is_refilled_so_a_hard_text_holds_nothing_back(tiny_codec):
    lm = tiny_codec.lm
    recipe = MEMTOK_SGD.replace(max_steps=300)  # on which these texts' step counts make the point
    targets = [tiny_codec.target_ids(t) for t in [UNSEEN] + TEXTS]
    steps_alone = [next(optimise(lm, resolve(lm, EncodeConfig(recipe=recipe)), [Job(0, t, 1)])).steps for t in targets[1:]]
    infos = []
    jobs = [Job(i, t, 1) for i, t in enumerate(targets)]
    results = list(optimise(lm, resolve(lm, EncodeConfig(recipe=recipe, batch_size=2)), jobs, on_step=infos.append))
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


@bits_on_cpu
def test_jobs_of_different_k_share_a_batch_as_if_alone(tiny_codec):
    lm = tiny_codec.lm
    layout = Layout.build(lm, "{memory}", 1, MEMTOK.bos)
    jobs = [Job(i, tiny_codec.target_ids(t), k) for i, (t, k) in enumerate(zip(TEXTS[:4], (1, 3, 2, 1)))]
    alone = {j.key: next(optimise(lm, resolve(lm, EncodeConfig(recipe="memtok")), [j])) for j in jobs}
    together = {r.key: r for r in optimise(lm, resolve(lm, EncodeConfig(recipe="memtok", batch_size=4)), jobs)}
    for key, a in alone.items():
        b = together[key]
        assert a.steps == b.steps and a.converged and b.converged and len(b.vectors) == jobs[key].k
        lay = layout.with_k(jobs[key].k)
        n = len(jobs[key].targets)
        assert greedy(lm, lay, a.vectors, n) == greedy(lm, lay, b.vectors, n) == jobs[key].targets


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
    mem = tiny_codec.encode(TEXTS[4], k=3)
    assert mem.vectors.shape == (3, tiny_codec.lm.hidden_size)
    assert mem.exact and tiny_codec.decode(mem) == TEXTS[4]


def test_every_recipe_round_trips(tiny_codec):
    for name in ("paper", "kuratov", "memtok-sgd"):
        mem = tiny_codec.encode(TEXTS[1], recipe=name, max_steps=1500)
        assert mem.recipe["name"] == name
        assert mem.exact, name
        assert tiny_codec.decode(mem) == TEXTS[1]


@bits_on_cpu
def test_low_rank_recipe_round_trips_and_batches_as_if_alone(tiny_codec):
    rec = MEMTOK.replace(name="low-rank", optimizer="adam", lr=0.03, rank=8)
    alone = [tiny_codec.encode(t, recipe=rec, k=2) for t in TEXTS[:3]]
    batched = tiny_codec.encode(TEXTS[:3], recipe=rec, k=2, batch_size=3)
    assert [m.exact for m in batched] == [True] * 3
    for a, b in zip(alone, batched):
        same_outcome(tiny_codec, a, b)
    assert batched[0].recipe["rank"] == 8
    assert tiny_codec.decode(batched) == TEXTS[:3]
    with pytest.raises(MemtokError, match="rank"):
        MEMTOK.replace(rank=-1)


def test_a_text_that_cannot_be_made_exact_is_reported_not_exact(tiny_codec):
    mem = tiny_codec.encode(UNSEEN, k=1, max_steps=30)
    assert not mem.exact and mem.steps == 30
    assert tiny_codec.decode(mem, check=False) != UNSEEN


@pytest.mark.parametrize("bad, kwargs, message", [
    ("", {}, "empty text"),
    ("x", {"k": 70}, "leave no room for text"),  # the tiny model's context is 64
    ("x", {"k": "many"}, "number of vectors from 1 to 256, 'plan' or 'auto'"),
    ("x", {"segment_tokens": 0}, "segment_tokens must be a whole number of at least 1"),
])
def test_bad_texts_are_refused(tiny_codec, bad, kwargs, message):
    with pytest.raises(MemtokError, match=message):
        tiny_codec.encode(bad, **kwargs)


def test_bad_options_are_refused(tiny_codec):
    with pytest.raises(MemtokError, match="exactly once"):
        tiny_codec.encode(TEXTS[0], template="no placeholder")
    with pytest.raises(MemtokError, match="from 1 to 256"):
        tiny_codec.encode(TEXTS[0], k=0)
    with pytest.raises(MemtokError, match="unknown recipe"):
        tiny_codec.encode(TEXTS[0], recipe="nope")
    with pytest.raises(MemtokError, match="max steps"):
        tiny_codec.encode(TEXTS[0], max_steps=0)


def test_bf16_autocast_optimises_and_float32_decoding_still_judges(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:3], recipe=MEMTOK.replace(bf16=True), max_steps=300)
    assert all(m.exact and m.recipe["bf16"] is True for m in mems)
    assert tiny_codec.decode(mems) == TEXTS[:3]


def test_a_token_budget_bounds_every_forward_pass(tiny_codec):
    """Memory is bounded by positions per pass, not texts per batch: texts join while they fit, and
    a text longer than a pass holds is cut into pieces that fit."""
    lm = tiny_codec.lm
    targets = tiny_codec.target_ids(TEXTS[4])
    positions = 1 + 1 + len(targets) - 1  # BOS, the vector, the text (EOS is only predicted)
    infos = []
    config = EncodeConfig(recipe="memtok", max_steps=3, batch_size=8, max_batch_tokens=2 * positions + 1)
    results = list(optimise(lm, resolve(lm, config), [Job(i, targets, 1) for i in range(6)], on_step=infos.append))
    assert len(results) == 6 and max(i.active for i in infos) == 2
    text = " ".join(TEXTS[:3])
    mem = tiny_codec.encode(text, k=1, max_batch_tokens=16, max_steps=3)
    assert len(mem.segments) > 1 and all(s["tokens"] <= 16 - 2 for s in mem.segments)  # + BOS and the vector
    assert tiny_codec.decode(mem, check=False) != "" and mem.n_tokens == len(lm.tokenize(text))


def test_a_codec_says_what_it_is_and_where(tiny_codec):
    assert tiny_codec.device == tiny_codec.lm.device
    assert repr(tiny_codec) == (f"MemoryCodec(model={tiny_codec.lm.name!r}, device={str(tiny_codec.device)!r}, "
                                f"dtype='float32', fingerprint={tiny_codec.lm.fingerprint[:16]!r})")


def test_a_model_already_loaded_makes_the_same_codec_as_its_folder(tiny_dir, tiny_codec):
    """As peft's get_peft_model(model, config): objects a user has in hand, used where they are. The
    fingerprint is of the weights and tokenizer, so memories move between the two."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    codec = MemoryCodec.from_pretrained(model, tokenizer=tok)
    assert codec.lm.fingerprint == tiny_codec.lm.fingerprint and codec.lm.model is model
    assert not any(p.requires_grad for p in model.parameters())
    assert tiny_codec.decode(codec.encode(TEXTS[0], k=1)) == TEXTS[0]
    with pytest.raises(MemtokError, match="needs its tokenizer"):
        MemoryCodec.from_pretrained(model)
    with pytest.raises(MemtokError, match="stays where and as it is"):
        MemoryCodec.from_pretrained(model, "cpu", tokenizer=tok)
    with pytest.raises(MemtokError, match="tokenizer= goes with a model already loaded"):
        MemoryCodec.from_pretrained(tiny_dir, tokenizer=tok)
    with pytest.raises(MemtokError, match="unknown loading option"):
        load(tiny_dir, "cpu", revision=None, proxies="x")
