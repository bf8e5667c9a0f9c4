"""`EncodeConfig`: checked once, the same from Python and from every command, and what runs pin."""

import json

import pytest
from helpers import TEXTS, run, write_csv

from memtok import RECIPES, EncodeConfig, MemtokError
from memtok.settings.recipes import MEMTOK_LEARNED, default_recipe


@pytest.mark.parametrize("options", [
    {},
    {"k": "auto", "max_steps": 7},
    {"k": 3, "recipe": "paper", "template": "Recall: {memory}", "storage": "int8", "segment_tokens": 20,
     "batch_size": 2, "max_batch_tokens": 64, "keep_text": True},
])
def test_to_dict_is_plain_json_with_the_overrides_applied(options):
    config = EncodeConfig(**options)
    config = config.replace(recipe=config.recipe or default_recipe(config.plain_plan, learned_start=False))
    d = config.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["recipe"] == config.recipe.to_dict() and "max_steps" not in d
    if "max_steps" in options:
        assert d["recipe"]["max_steps"] == options["max_steps"]
    assert config.replace().to_dict() == d  # replace re-checks and keeps the overrides


@pytest.mark.parametrize("options, learned", [
    ({}, True), ({"storage": "float16"}, False), ({"k": 1}, False), ({"k": "auto"}, False), ({"favour": "bytes"}, False),
    ({"compact": True}, False), ({"storage": "int8"}, False), ({"segment_tokens": 20}, False),
    ({"template": "Recall: {memory}"}, False), ({"chat": True}, False),
])
def test_the_learned_start_is_the_default_only_on_the_plans_short_float_segments(options, learned):
    """Where the learned start was measured to pay; everywhere else, and on a model without one, `memtok`."""
    config = EncodeConfig(max_steps=300, **options)
    assert config.recipe is None and config.plain_plan == learned
    assert default_recipe(config.plain_plan, learned_start=False).name == "memtok"
    chosen = config.replace(recipe=default_recipe(config.plain_plan, learned_start=True)).recipe
    assert chosen.name == (MEMTOK_LEARNED.name if learned else "memtok") and chosen.max_steps == 300


@pytest.mark.parametrize("options, message", [
    ({"k": 0}, "from 1 to 256"), ({"k": 257}, "from 1 to 256"), ({"k": "many"}, "or 'auto'"),
    ({"k": True}, "or 'auto'"), ({"recipe": "nope"}, "unknown recipe"), ({"max_steps": 0}, "max steps"),
    ({"template": "no placeholder"}, "exactly once"), ({"storage": "int3"}, "storage dtype"),
    ({"segment_tokens": 0}, "segment_tokens must be a whole number of at least 1"),
    ({"batch_size": 0}, "batch_size must be a whole number from 1 to 1024"),
    ({"max_batch_tokens": 1}, "max_batch_tokens must be a whole number of at least 2"),
])
def test_bad_options_are_refused_on_creation(options, message):
    with pytest.raises(MemtokError, match=message):
        EncodeConfig(**options)


def test_unknown_options_are_refused_with_the_valid_ones(tiny_codec):
    with pytest.raises(MemtokError, match=r"unknown encode option\(s\) tokens; valid: k, favour, recipe"):
        tiny_codec.encode(TEXTS[0], tokens=2)
    with pytest.raises(MemtokError, match="unknown encode option"):
        tiny_codec.encode(TEXTS[0], EncodeConfig(), stepz=3)


def test_a_config_and_options_combine(tiny_codec):
    mem = tiny_codec.encode(TEXTS[0], EncodeConfig(k=2, max_steps=300), keep_text=True)
    assert mem.k == 2 and mem.text == TEXTS[0] and mem.recipe == RECIPES["memtok"].replace(max_steps=300).to_dict()


def test_every_command_builds_the_config_python_would(tiny_dir, tmp_path, capsysbinary):
    """The one options decorator: what `memtok eval` pins is `EncodeConfig(...).to_dict()` of the same
    choices, and a memory records the same recipe."""
    data = write_csv(tmp_path / "d.csv", TEXTS[:1])
    out = tmp_path / "run"
    code, _, err = run(["eval", str(data), "--model", tiny_dir, "--out", str(out), "--tokens", "2", "--max-steps",
                        "300", "--storage", "float16", "--recipe", "memtok-sgd", "-b", "3", "--keep-text"], capsysbinary)
    assert code == 0, err
    pinned = json.loads((out / "run.json").read_text())
    expected = EncodeConfig(k=2, max_steps=300, storage="float16", recipe=RECIPES["memtok-sgd"], batch_size=3,
                            keep_text=True).to_dict()
    assert {key: pinned[key] for key in expected} == expected
    code, stdout, _ = run(["info", str(out / "memories" / "000000.safetensors"), "--json"], capsysbinary)
    assert code == 0 and json.loads(stdout)["recipe"] == expected["recipe"]


def test_dtype_means_the_models_arithmetic_only():
    """`dtype` is what the model computes in (`from_pretrained`, `--model-dtype`); the saved vectors'
    precision is `storage`: an encode given `dtype=` is refused in one line that says so."""
    from memtok.cli import cli

    with pytest.raises(MemtokError, match="dtype is what the model computes in.*storage='int8'"):
        EncodeConfig.from_options(dtype="int8")
    assert "--dtype" not in [f for p in cli.commands["eval"].params for f in getattr(p, "opts", [])]


@pytest.mark.parametrize("storage", ["int4", "ternary", "binary"])
def test_a_semantic_memory_in_low_bit_levels_is_refused_in_one_line(storage):
    """Rounding to a few levels per number moves the code a semantic memory keeps with the rest of
    its vectors, so a search would rank by a code that is no longer its text's."""
    with pytest.raises(MemtokError, match=f"which {storage} levels would move") as refused:
        EncodeConfig(semantic=True, storage=storage)
    assert "\n" not in str(refused.value)
    with pytest.raises(MemtokError, match="which int4 levels would move"):
        EncodeConfig(semantic=True, compact=True)


@pytest.mark.parametrize("options", [{"k": 1}, {"k": "auto"}, {"compact": True}])
def test_favouring_bytes_where_there_is_no_plan_is_refused_not_ignored(options):
    with pytest.raises(MemtokError, match="favour='bytes' picks the plan's segment length; with .* no effect"):
        EncodeConfig(favour="bytes", **options)
    assert EncodeConfig(favour="bytes").favour == "bytes"



@pytest.mark.parametrize("options", [{"batch_size": 2000}, {"max_steps": 2_000_000}, {"batch_size": 2.5}])
def test_a_fields_bounds_hold_in_python_as_on_the_command_line(options):
    """The bounds the command line gives an option (`--batch-size` up to 1024) hold for Python too."""
    with pytest.raises(MemtokError, match=r"batch_size must be a whole number from 1|max steps must be between 1"):
        EncodeConfig(**options)


def test_the_typed_keyword_options_are_the_configs_fields():
    """`encode(**options)` is typed by `EncodeOptions` (an editor completes it): the same names as
    `EncodeConfig`, and the same choices where a field has a fixed few."""
    import dataclasses
    import typing

    from memtok.model.dtypes import DTYPES
    from memtok.settings.config import FAVOUR, EncodeOptions

    hints = typing.get_type_hints(EncodeOptions)
    assert set(hints) == {f.name for f in dataclasses.fields(EncodeConfig)}
    assert typing.get_args(hints["storage"]) == DTYPES and typing.get_args(hints["favour"]) == FAVOUR
