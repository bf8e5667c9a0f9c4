"""Texts in flight when a run stops are saved, and the next run takes each up at its step."""

from __future__ import annotations

import pytest
from helpers import FAST_TEXT, SLOW_TEXT, Stop, Stopped

from memtok import EncodeConfig
from memtok.encode.checkpoint import Checkpoint
from memtok.encode.jobs import Job
from memtok.encode.optimise import optimise
from memtok.encode.resolved import resolve


def test_a_stopped_text_goes_on_from_its_step_and_ends_as_the_unstopped_run_does(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=8)  # 7 updates made
    lm, job, path = run.lm, run.job, run.path
    whole = next(optimise(lm, run.resolved, [job]))
    assert whole.converged and whole.steps > 8
    assert path.exists()

    resumed, passes = run.checkpoint(), Stop()
    assert len(resumed.waiting) == 1
    again = next(optimise(lm, run.resolved, [job], passes, resumed))
    # the same trajectory from update 7 on: same total steps, one pass per step from there and the last judgement
    assert again.converged and again.steps == whole.steps and passes.calls == whole.steps - 7 + 1
    assert again.seconds >= 0 and not resumed.waiting
    resumed.finish()
    assert not path.exists()


def test_a_stopped_encode_saves_the_text_in_flight_and_the_next_call_finishes_it(tiny_codec, tmp_path, monkeypatch):
    import memtok.encode.optimise as optimise_module

    path = tmp_path / "in-flight.safetensors"
    monkeypatch.setattr(optimise_module, "VERIFY_AT_ONCE_SECONDS", 0.0)  # each result verified as it comes

    def stop(i, mem):  # the fast text's memory arrives while the slow one is still being optimised
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_codec.encode([SLOW_TEXT, FAST_TEXT], k=1, batch_size=2, on_result=stop, checkpoint=path,
                          show_progress_bar=False)
    config = EncodeConfig(k=1, recipe="memtok", batch_size=2)
    saved = Checkpoint(path, tiny_codec.lm, resolve(tiny_codec.lm, config)).waiting
    # the slow text was updated on the pass that found the fast one exact, before the fast one's memory came out
    assert [s.step for s in saved.values()] == [tiny_codec.encode(FAST_TEXT, k=1).steps + 1]

    mem = tiny_codec.encode(SLOW_TEXT, k=1, batch_size=2, checkpoint=path, show_progress_bar=False)
    assert mem.exact and mem.steps == tiny_codec.encode(SLOW_TEXT, k=1).steps
    assert not path.exists()


def test_a_checkpoint_is_taken_up_only_under_its_settings_and_a_damaged_one_is_set_aside(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    config = run.resolved.config
    assert run.checkpoint(config.replace(storage="float16")).waiting == {}
    assert run.checkpoint(config.replace(recipe=config.recipe.replace(lr=0.01))).waiting == {}
    assert len(run.checkpoint().waiting) == 1

    run.path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")  # cut short: a header and no tensors
    assert run.checkpoint().waiting == {}
    assert not run.path.exists() and run.path.with_name(run.path.name + ".corrupt").exists()


def test_states_a_run_did_not_reach_are_kept_for_the_run_that_will(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    other = run.checkpoint()  # a run of another text: the slow text's state stays
    next(optimise(run.lm, run.resolved, [Job(0, tiny_codec.target_ids(FAST_TEXT), 1)], checkpoint=other))
    other.finish()
    assert len(run.checkpoint().waiting) == 1


def test_a_state_taken_for_a_slot_that_could_not_be_made_is_there_for_the_next_try(tiny_codec, tmp_path, monkeypatch):
    """Out of memory while a text's slot is made, the text waits at the head of the queue: the saved
    state it took must be there again when it gets its slot."""
    import dataclasses

    import torch

    from memtok.encode.slot import TextSlot

    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    saved = run.checkpoint()
    failing = dataclasses.replace(run.resolved, make_vectors=lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    with pytest.raises(torch.OutOfMemoryError):
        TextSlot(run.lm, run.job, failing, saved)
    assert len(saved.waiting) == 1
    slot = TextSlot(run.lm, run.job, run.resolved, saved)
    assert slot.steps == 2 and not saved.waiting  # stopped on pass 3: two updates made


def test_every_field_of_a_slots_state_survives_the_file_and_the_slot(tiny_codec, tmp_path):
    """A slot's state is written, read, snapshotted and restored in one place each (`SlotState`):
    every field, given a value unlike its default, comes back from the file and from a slot made
    from it."""
    import dataclasses

    import torch

    from memtok.encode.checkpoint import SlotState
    from memtok.encode.slot import TextSlot

    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    (key, state), = run.checkpoint().waiting.items()
    odd = dataclasses.replace(state, **{name: type(getattr(state, name))(7) for name in SlotState.counters()},
                              seconds=1.5)
    Checkpoint(tmp_path / "odd.safetensors", run.lm, run.resolved).save({key: odd})
    back = Checkpoint(tmp_path / "odd.safetensors", run.lm, run.resolved).waiting[key]
    for f in dataclasses.fields(SlotState):
        a, b = getattr(odd, f.name), getattr(back, f.name)
        same = (torch.equal(a, b) if isinstance(a, torch.Tensor) else
                all(torch.equal(x, y) for x, y in zip(a, b)) if f.name == "params" else
                all(torch.equal(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)) if f.name == "moments" else a == b)
        assert same, f.name
    holder = Checkpoint(tmp_path / "holder.safetensors", run.lm, run.resolved)
    holder.give_back(key, back)
    again = TextSlot(run.lm, run.job, run.resolved, holder).snapshot()
    assert {n: getattr(again, n) for n in SlotState.counters()} == {n: getattr(odd, n) for n in SlotState.counters()}
