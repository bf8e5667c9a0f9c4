"""Every run folder under docs/results resumes with the command its report prints, on today's code."""

import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from memtok.cli import cli
from memtok.cli.options import config_of
from memtok.errors import MemtokError
from memtok.runs.folder import pin_settings, pinned_settings
from memtok.runs.migrate import command_for, upgrade
from memtok.runs.sources import Source
from memtok.settings.recipes import MEMTOK

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
FOLDERS = sorted(p.parent for p in RESULTS.glob("*/run.json") if (p.parent / "report.md").exists())  # not in flight


def settings_of_command(command: str, pinned: dict) -> dict:
    """What `command` would pin, the model and data being those the folder pinned (none is loaded)."""
    args = shlex.split(command)[1:]
    name = args[0]
    params = cli.commands[name].make_context(name, args[1:]).params
    made = config_of(params, many_k=name == "capacity")
    lm = SimpleNamespace(name=pinned["model"], fingerprint=pinned["model_fingerprint"], source=None)
    source = Source(params["data"], [""] * params["limit"], pinned["data_sha256"], params["rows"], params["split"])
    extra = {"k": sorted(made["ks"]), "lengths": sorted(params["lengths"]), "eos": params["eos"]} \
        if name == "capacity" else {}
    # the start the folder began from
    return pinned_settings(lm, made["config"], pinned.get("start"), source, command, **extra)


def test_there_are_folders_to_check():
    assert len(FOLDERS) >= 18


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_stored_folder_resumes_with_its_printed_command(folder, tmp_path):
    pinned = json.loads((folder / "run.json").read_text())
    command = command_for(pinned, f"docs/results/{folder.name}")
    copy = tmp_path / "run.json"
    copy.write_text(json.dumps(pinned))
    pin_settings(copy, settings_of_command(command, pinned))  # refuses if anything that matters differs
    assert f"`{command}`" in (folder / "report.md").read_text()


def test_an_old_folder_still_refuses_a_run_that_would_change_its_results(tmp_path):
    old = {"tokens": 1, "data": "d.csv", "recipe": {k: v for k, v in MEMTOK.to_dict().items() if k != "eos_weight"}}
    copy = tmp_path / "run.json"
    copy.write_text(json.dumps(old))
    now = upgrade(old)
    pin_settings(copy, now)  # the same run, in today's names
    with pytest.raises(MemtokError, match="recipe.eos_weight"):
        pin_settings(copy, {**now, "recipe": {**now["recipe"], "eos_weight": 2.0}})
    with pytest.raises(MemtokError, match=r"\bk\b"):
        pin_settings(copy, {**now, "k": 2})


@pytest.mark.parametrize("folder", ["raschka100-k1", "capacity-smollm2-r1000-k1"])
def test_a_semantic_folder_resumes_with_its_printed_command(folder, tmp_path):
    pinned = {**json.loads((RESULTS / folder / "run.json").read_text()), "semantic": True}
    command = command_for(pinned, "out")
    copy = tmp_path / "run.json"
    copy.write_text(json.dumps(pinned))
    pin_settings(copy, settings_of_command(command, pinned))  # refuses if --semantic were left out
    assert "--semantic=self" in shlex.split(command)  # a folder from before teachers had names: its own model
