"""Older run folders, read in today's terms: renamed settings, fields added since, today's command.

A folder pins the settings it was made with (`run.json`); memtok has since renamed `tokens` to `k`
and added recipe and config fields. A field a folder does not name was not there when it was made,
so it ran as that field's neutral value (the dataclass default, which is always the old behaviour),
and the folder is read as if it named that value. `command_for` then writes the command that
resumes the folder with today's command line.
"""

from __future__ import annotations

import dataclasses
import shlex

from ..model.embedded import DEFAULT_MODEL
from ..settings.config import EncodeConfig, cli_flag
from ..settings.recipes import Recipe, recipe_spec

RENAMED = {"tokens": "k", "dtype": "storage"}  # old name -> today's


def _defaults(cls: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def upgrade(pinned: dict) -> dict:
    """A folder's pinned settings with today's names and every field today has."""
    d = {RENAMED.get(k, k): v for k, v in pinned.items()}
    config_fields = {k: v for k, v in _defaults(EncodeConfig).items() if k not in ("recipe", "max_steps", "k")}
    d = {**config_fields, **d}
    if d.get("semantic") is True:  # before teachers had names, a semantic memory was taught by its own model
        d["semantic"] = "self"
    d["semantic"] = d.get("semantic") or None
    if isinstance(d.get("recipe"), dict):
        neutral = {k: (list(v) if isinstance(v, tuple) else getattr(v, "value", v))
                   for k, v in _defaults(Recipe).items()}
        d["recipe"] = {**neutral, **d["recipe"]}
    return d


def pinned_out(pinned: dict) -> str:
    """The folder a run's recorded command wrote into (its --out)."""
    args = shlex.split(pinned.get("command", ""))
    for flag in ("--out", "-o"):
        if flag in args[:-1]:
            return args[args.index(flag) + 1]
    return "."


def command_for(pinned: dict, folder: str | None = None) -> str:
    """The command that resumes `folder` (eval or capacity; default: its recorded --out) with
    today's options."""
    d = upgrade(pinned)
    folder = folder or pinned_out(pinned)
    capacity = "lengths" in d
    args = ["memtok", "capacity" if capacity else "eval", d["data"], "--limit", str(d["n_texts"])]
    args += ["--rows", d["rows"]] if d.get("rows") else []
    args += ["--split", d["split"]] if d.get("split") else []
    if capacity:
        args += ["--lengths", ",".join(map(str, d["lengths"])), "-k", ",".join(map(str, d["k"]
                 if isinstance(d["k"], list) else [d["k"]]))]
        args += [] if d.get("eos", True) else ["--no-eos"]
    for f in dataclasses.fields(EncodeConfig):  # every setting the folder pinned away from its default
        value = d.get(f.name, f.default)
        if f.name in ("recipe", "max_steps") or (capacity and (f.name == "k" or f.metadata["texts_only"])):
            continue  # the recipe in full below, with its max_steps; a capacity run's K above
        if value != f.default and not (f.name == "storage" and d.get("compact")):  # compact implies its storage
            args += [cli_flag(f)] if value is True else [f"{cli_flag(f)}={value}"]
    args += ["--recipe", recipe_spec(d["recipe"])]
    args += ["--model", d["model"]] if d["model"] != DEFAULT_MODEL else []
    args += ["--out", folder]
    return shlex.join(args)
