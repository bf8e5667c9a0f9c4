"""`k="plan"`, the default: segments of the length one vector holds, one more vector after a failed
try, and no fixed K given more text than it can hold."""

from __future__ import annotations

from helpers import HARD_FOR_ONE, SGD, TEXTS, run

from memtok import EncodeConfig
from memtok.encode.plan import TOKENS_PER_VECTOR, most_tokens

LONG = " ".join(TEXTS[:6])  # 50-odd tokens of the tiny model: longer than a planned segment for steps


def test_the_default_cuts_a_long_text_into_planned_segments_and_grows_k_at_most_twice(tiny_codec):
    """The mechanics on the tiny model (it was trained on single sentences, so segments spanning
    several are beyond it); that planned segments come out exact is tested on the real model."""
    assert EncodeConfig().k == "plan"
    n = len(tiny_codec.lm.tokenize(LONG))
    assert n > TOKENS_PER_VECTOR["steps"], "the text must be longer than one planned segment"
    mem = tiny_codec.encode(LONG, max_steps=8)
    assert len(mem.segments) >= 2 and all(s["tokens"] <= TOKENS_PER_VECTOR["steps"] for s in mem.segments)
    assert mem.n_tokens == n and tiny_codec.decode(mem, check=False)
    for s in mem.segments:  # K, K + 1, K + 2 at most, stopping at the first exact try
        assert s["tried"] == list(range(1, len(s["tried"]) + 1)) and len(s["tried"]) <= 3
        assert s["k"] in s["tried"]


def test_a_failed_try_gets_one_more_vector(tiny_codec):
    # HARD_FOR_ONE: one vector under plain SGD needs ~276 steps, a try here gets 50; two need ~13
    mem = tiny_codec.encode(HARD_FOR_ONE, max_steps=200, recipe=SGD)
    assert mem.exact and mem.segments[0]["tried"] == [1, 2] and mem.k == 2


def test_favouring_bytes_makes_fewer_longer_segments(tiny_codec):
    steps = tiny_codec.encode(LONG, max_steps=1)
    fewer = tiny_codec.encode(LONG, max_steps=1, favour="bytes")
    assert len(fewer.segments) < len(steps.segments) and fewer.n_tokens == steps.n_tokens
    assert "planned for bytes" in tiny_codec.plan(LONG, favour="bytes")


def test_a_fixed_k_is_never_given_more_text_than_it_can_hold(tiny_codec):
    hold = most_tokens(tiny_codec.lm.hidden_size, 1)
    assert len(tiny_codec.lm.tokenize(LONG)) > hold, "the text must be longer than one vector may hold"
    mem = tiny_codec.encode(LONG, k=1, max_steps=1)
    assert len(mem.segments) >= 2 and all(s["tokens"] <= hold for s in mem.segments)
    two = tiny_codec.encode(LONG, k=2, max_steps=1)
    assert len(two.segments) <= len(mem.segments)
    assert f"at most {hold} tokens" in tiny_codec.plan(LONG, k=1)


def test_encode_says_how_it_cut_the_text(tiny_dir, tmp_path, capsysbinary):
    code, _, err = run(["encode", LONG, "-o", str(tmp_path / "m.safetensors"), "--model", tiny_dir,
                        "--max-steps", "4"], capsysbinary)
    assert code in (0, 1), err
    plan = next(line for line in err.splitlines() if line.startswith("plan: "))
    assert "segments of at most 32 tokens" in plan and "one vector per 32 tokens" in plan
    assert plan.endswith("; recipe memtok")  # the tiny model has no learned start


def test_a_fixed_k_beyond_what_was_measured_is_told():
    from memtok.encode.plan import FixedK

    assert FixedK(1, 576).describe(96) == "1 vector per segment"
    assert "200 tokens is beyond the 96 that 1 vector held here" in FixedK(1, 576).describe(200)


def test_a_texts_pieces_are_queued_together_the_text_with_the_longest_piece_first(tiny_codec):
    """So that texts finish one after another (an eval records each as it finishes) rather than all
    at the end, and a stopped run loses only the settled segments of the texts in flight."""
    from memtok.encode.schedule import TextSchedule

    texts = [" ".join(TEXTS[:2]), " ".join(TEXTS[2:5]), TEXTS[5], " ".join(TEXTS[6:])]
    run = TextSchedule(tiny_codec.lm, texts, tiny_codec.resolve(EncodeConfig(k=1, segment_tokens=6)))
    order = [run.segments[run.pop().key].text_index for _ in range(len(run))]
    runs = [t for j, t in enumerate(order) if j == 0 or order[j - 1] != t]
    assert sorted(runs) == sorted(set(order)) == list(range(len(texts)))  # each text's segments in one run
    longest = [max(len(p.targets) for p in run.of_text[t]) for t in runs]
    assert longest == sorted(longest, reverse=True) and len(order) > len(texts)
