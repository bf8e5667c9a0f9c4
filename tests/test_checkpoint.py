"""Texts in flight when a run stops are saved, and the next run takes each up at its step."""

from __future__ import annotations

import pytest
from conftest import TEXTS

from memtok import EncodeConfig
from memtok.checkpoint import Checkpoint
from memtok.layout import Layout
from memtok.optimise import Job, optimise
from memtok.resolved import Resolved, layout_for

SLOW_TEXT = TEXTS[0]  # about 20 steps with one vector on the tiny model
FAST_TEXT = TEXTS[1]  # a few steps


class Stop:
    """An `on_step` that counts the passes and raises KeyboardInterrupt (Ctrl-C) on pass `at`."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls = at, 0

    def __call__(self, info) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


class Stopped:
    """The slow text's optimisation with one vector, stopped by Ctrl-C on pass `at` (before that
    pass's update) with a checkpoint at `path`."""

    def __init__(self, codec, path, at: int, config: EncodeConfig | None = None) -> None:
        self.lm, self.path = codec.lm, path
        self.layout, self.config = Layout.build(self.lm, "{memory}", 1, True), config or EncodeConfig(k=1, recipe="memtok")
        self.job = Job(0, codec.target_ids(SLOW_TEXT), 1)
        with pytest.raises(KeyboardInterrupt):
            list(optimise(self.lm, Resolved(self.config, self.layout), [self.job], Stop(at), self.checkpoint()))

    def checkpoint(self, config: EncodeConfig | None = None) -> Checkpoint:
        return Checkpoint(self.path, self.lm, Resolved(config or self.config, self.layout))


def test_a_stopped_text_goes_on_from_its_step_and_ends_as_the_unstopped_run_does(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=8)  # 7 updates made
    lm, layout, config, job, path = run.lm, run.layout, run.config, run.job, run.path
    whole = next(optimise(lm, Resolved(config, layout), [job]))
    assert whole.converged and whole.steps > 8
    assert path.exists()

    resumed, passes = run.checkpoint(), Stop()
    assert len(resumed.waiting) == 1
    again = next(optimise(lm, Resolved(config, layout), [job], passes, resumed))
    # the same trajectory from update 7 on: same total steps, one pass per step from there and the last judgement
    assert again.converged and again.steps == whole.steps and passes.calls == whole.steps - 7 + 1
    assert again.seconds >= 0 and not resumed.waiting
    resumed.finish()
    assert not path.exists()


def test_a_stopped_encode_saves_the_text_in_flight_and_the_next_call_finishes_it(tiny_codec, tmp_path, monkeypatch):
    import memtok.optimise as optimise_module

    path = tmp_path / "in-flight.safetensors"
    monkeypatch.setattr(optimise_module, "VERIFY_AT_ONCE_SECONDS", 0.0)  # each result verified as it comes

    def stop(i, mem):  # the fast text's memory arrives while the slow one is still being optimised
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_codec.encode([SLOW_TEXT, FAST_TEXT], k=1, batch_size=2, on_result=stop, checkpoint=path,
                          show_progress_bar=False)
    config = EncodeConfig(k=1, recipe="memtok", batch_size=2)
    saved = Checkpoint(path, tiny_codec.lm, Resolved(config, layout_for(tiny_codec.lm, config))).waiting
    # the slow text was updated on the pass that found the fast one exact, before the fast one's memory came out
    assert [s.step for s in saved.values()] == [tiny_codec.encode(FAST_TEXT, k=1).steps + 1]

    mem = tiny_codec.encode(SLOW_TEXT, k=1, batch_size=2, checkpoint=path, show_progress_bar=False)
    assert mem.exact and mem.steps == tiny_codec.encode(SLOW_TEXT, k=1).steps
    assert not path.exists()


def test_a_checkpoint_is_taken_up_only_under_its_settings_and_a_damaged_one_is_set_aside(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    assert run.checkpoint(run.config.replace(dtype="float16")).waiting == {}
    assert run.checkpoint(run.config.replace(recipe=run.config.recipe.replace(lr=0.01))).waiting == {}
    assert len(run.checkpoint().waiting) == 1

    run.path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}")  # cut short: a header and no tensors
    assert run.checkpoint().waiting == {}
    assert not run.path.exists() and run.path.with_name(run.path.name + ".corrupt").exists()


def test_states_a_run_did_not_reach_are_kept_for_the_run_that_will(tiny_codec, tmp_path):
    run = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=3)
    other = run.checkpoint()  # a run of another text: the slow text's state stays
    next(optimise(run.lm, Resolved(run.config, run.layout), [Job(0, tiny_codec.target_ids(FAST_TEXT), 1)], checkpoint=other))
    other.finish()
    assert len(run.checkpoint().waiting) == 1
