"""A run that stalls starts again from the mean embedding (or its learned start:
`test_learned_start.py`) with a new factorisation (`Recipe.restart_after`); its steps go on
counting, and a checkpoint carries the restarts."""

from __future__ import annotations

import pytest
from helpers import SLOW_TEXT, Stopped, one_text_curve

from memtok import EncodeConfig
from memtok.encode.optimise import optimise


def test_without_restart_after_a_run_never_starts_again(tiny_codec):
    result, points = one_text_curve(tiny_codec, "memtok")
    assert result.converged and result.restarts == 0 and {p.restarts for p in points} == {0}


def test_a_stalled_run_starts_again_and_its_steps_go_on_counting(tiny_codec):
    result, points = one_text_curve(tiny_codec, "memtok:restart_after=1", max_steps=40)
    assert result.restarts >= 1
    # one update between passes, across restarts: the steps seen are 0, 1, 2 ... and the result's is the last
    assert [p.step for p in points] == list(range(len(points))) and result.steps == points[-1].step
    assert [p.restarts for p in points] == sorted(p.restarts for p in points)  # restarts only ever add up


def test_a_restart_begins_at_the_mean_with_the_next_seeds_factorisation(tiny_codec):
    _, points = one_text_curve(tiny_codec, "memtok:restart_after=1", max_steps=40)
    first_after = next(p for p in points if p.restarts == 1)
    _, fresh = one_text_curve(tiny_codec, "memtok:seed=1", max_steps=1)
    # the same start through the same computation: equal, give or take float32 rounding (eps 1.2e-7)
    # accumulated over the model's sums
    assert first_after.loss == pytest.approx(fresh[0].loss, rel=1e-5)
    assert first_after.accuracy == fresh[0].accuracy


def test_a_stopped_run_goes_on_after_its_restarts_as_the_unstopped_one(tiny_codec, tmp_path):
    config = EncodeConfig(k=1, recipe="memtok:restart_after=2", max_steps=40)
    whole, points = one_text_curve(tiny_codec, "memtok:restart_after=2", max_steps=40)
    at = next(i for i, p in enumerate(points) if p.restarts == 1) + 3  # stopped a few passes after a restart
    stopped = Stopped(tiny_codec, tmp_path / "in-flight.safetensors", at=at, config=config)
    (saved,) = stopped.checkpoint().waiting.values()
    assert saved.restarts == 1 and saved.steps_before > 0

    again = next(optimise(stopped.lm, stopped.resolved, [stopped.job], None, stopped.checkpoint()))
    assert (again.steps, again.restarts, again.converged) == (whole.steps, whole.restarts, whole.converged)


def test_a_memory_records_each_segments_restarts_when_the_recipe_restarts(tiny_codec):
    restarted = tiny_codec.encode(SLOW_TEXT, recipe="memtok:restart_after=1", max_steps=40, show_progress_bar=False)
    assert restarted.recipe["restart_after"] == 1 and all(s["restarts"] >= 1 for s in restarted.segments)
    plain = tiny_codec.encode(SLOW_TEXT, show_progress_bar=False)
    assert plain.recipe["restart_after"] is None and all("restarts" not in s for s in plain.segments)
