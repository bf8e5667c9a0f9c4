"""Batched greedy verification: the verdict `memtok decode` would give, at a fraction of the cost."""

from __future__ import annotations

import torch
from helpers import TEXTS

import memtok.decode.greedy
from memtok.decode.greedy import greedy, greedy_batch, greedy_many, verify
from memtok.model.layout import Layout
from memtok.settings.recipes import get_recipe


def memories(codec, texts, k=1):
    """Exact memories of `texts`, their targets, and the layout they were made with."""
    mems = codec.encode(texts, k=k, batch_size=len(texts))
    assert all(m.exact for m in mems)
    layout = Layout.build(codec.lm, "{memory}", k, get_recipe("memtok").bos)
    return [m.vectors for m in mems], [codec.target_ids(t) for t in texts], layout


def test_a_batch_decodes_each_row_as_it_decodes_alone(tiny_codec):
    vectors, targets, layout = memories(tiny_codec, TEXTS[:4])
    longest = max(map(len, targets))
    ids, margins = greedy_batch(tiny_codec.lm, layout, torch.stack(vectors), longest)
    for row, m, t in zip(ids.tolist(), vectors, targets):
        assert greedy(tiny_codec.lm, layout, m, longest) == t and row[:len(t)] == t
    assert (margins[:, 0] > 0).all()  # the winner's lead over the runner-up


def test_verdicts_match_decoding_alone_for_right_wrong_and_mixed_k(tiny_codec, monkeypatch):
    lm = tiny_codec.lm
    one, t1, layout = memories(tiny_codec, TEXTS[:3])
    two, t2, _ = memories(tiny_codec, TEXTS[3:5], k=2)
    # a memory given another text's targets, and one whose EOS comes too soon for its targets
    mems = one + two + [one[0], one[1]]
    targets = t1 + t2 + [t1[1], t1[1][:-1] + [5] + t1[1][-1:]]
    alone = [greedy(lm, layout.with_k(len(m)), m, len(t)) == t for m, t in zip(mems, targets)]
    assert alone == [True] * 5 + [False, False]
    calls = []
    monkeypatch.setattr(memtok.decode.greedy, "greedy", lambda *a: calls.append(a) or greedy(*a))
    assert verify(lm, layout, mems, targets) == alone
    # every batched verdict here won by a wide margin: no memory needed decoding alone
    assert calls == []
    # below the safe margin, a memory is decoded alone (against its targets), and the verdict is the same
    monkeypatch.setattr(memtok.decode.greedy, "SAFE_MARGIN", float("inf"))
    assert verify(lm, layout, mems, targets) == alone
    assert len(calls) == len(mems) and all(c[4] is not None for c in calls)


def test_decoding_against_targets_stops_at_the_first_wrong_choice(tiny_codec):
    vectors, targets, layout = memories(tiny_codec, TEXTS[:2])
    full = greedy(tiny_codec.lm, layout, vectors[0], len(targets[1]))
    departs = next(i for i, (a, b) in enumerate(zip(full, targets[1])) if a != b)
    ids, margins = greedy_batch(tiny_codec.lm, layout, vectors[0][None], len(targets[1]), [targets[1]])
    assert ids[0].tolist() == full[:departs + 1] and margins.shape == ids.shape
    # a right memory runs to the end of its targets
    ids, _ = greedy_batch(tiny_codec.lm, layout, torch.stack(vectors), len(targets[1]), [targets[0], targets[1]])
    assert ids[1].tolist() == targets[1]


def test_many_memories_decode_in_batches_to_what_each_gives_alone(tiny_codec, monkeypatch):
    lm = tiny_codec.lm
    one, t1, layout = memories(tiny_codec, TEXTS[:3])
    two, t2, _ = memories(tiny_codec, TEXTS[3:5], k=2)
    noisy = one[0] + 3 * one[0].std() * torch.randn(one[0].shape, generator=torch.Generator().manual_seed(0))
    # each row's own budget: a memory of another, longer text, and one cut short of its EOS
    jobs = [(layout, m, len(t)) for m, t in zip(one + two, t1 + t2)] + \
        [(layout, noisy, len(t1[0])), (layout, one[1], len(t1[1]) - 2)]
    alone = [greedy(lm, lay.with_k(len(m)), m, n) for lay, m, n in jobs]
    assert alone[:5] == t1 + t2 and alone[5] != t1[0] and alone[6] == t1[1][:-2]
    calls = []
    monkeypatch.setattr(memtok.decode.greedy, "greedy", lambda *a: calls.append(a) or greedy(*a))
    done = []
    assert greedy_many(lm, jobs, batch_size=4, done=done.append) == alone
    assert sum(done) == len(jobs)
    assert len(calls) < len(jobs)  # most rows stood batched; below the safe margin a row is decoded alone
    monkeypatch.setattr(memtok.decode.greedy, "SAFE_MARGIN", float("inf"))
    calls.clear()
    assert greedy_many(lm, jobs, batch_size=4) == alone
    assert len(calls) == len(jobs)


def test_codec_decodes_a_list_as_it_decodes_each(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:4], k=1, batch_size=4) + [tiny_codec.encode(TEXTS[5], k=2)]
    assert tiny_codec.decode(mems, batch_size=3) == [tiny_codec.decode(m) for m in mems] == TEXTS[:4] + [TEXTS[5]]
