"""The `memtok` command: encode, decode, info.

Bad input exits 2 with one line on standard error; other failures exit 1 the same way.
MEMTOK_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import click

from . import __version__
from .errors import MemtokError
from .layout import DEFAULT_TEMPLATE
from .recipes import DEFAULT_RECIPE, RECIPES
from .storage import DTYPES

MODEL_HELP = "hub id, local model directory or .gguf file; default: the embedded SmolLM2-135M"


def _quiet_libraries() -> None:
    """transformers' and the hub's load-time bars, notices and retry warnings would bury memtok's own lines."""
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _load_codec(model: str | None, device: str | None):
    from .codec import MemoryCodec

    _quiet_libraries()
    return MemoryCodec.from_pretrained(model, device)


def model_option(f):
    return click.option("--model", "-m", default=None, help=MODEL_HELP)(f)


def device_option(f):
    return click.option("--device", default=None, help="cpu, cuda, cuda:1 ...; default: CUDA when present")(f)


class TokensType(click.ParamType):
    name = "K|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int):
            return value
        if str(value).isdigit() and 1 <= int(value) <= 256:
            return int(value)
        self.fail(f"{value!r} is neither 'auto' nor a number of vectors from 1 to 256", param, ctx)


def recipe_options(f):
    f = click.option("--recipe", type=click.Choice(list(RECIPES)), default=DEFAULT_RECIPE, show_default=True,
                     help="optimisation recipe")(f)
    f = click.option("--max-steps", type=click.IntRange(1, 1_000_000), default=None,
                     help="give up on a text after this many steps (default: the recipe's)")(f)
    f = click.option("--tokens", "-k", type=TokensType(), default="1", show_default=True,
                     help="memory vectors per text (per segment), or 'auto': the fewest that make it exact")(f)
    f = click.option("--segment-tokens", type=click.IntRange(1), default=None,
                     help="cut texts into pieces of at most this many tokens, each with its own vectors "
                          "(texts longer than the model's context are always cut)")(f)
    f = click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
                     help="storage precision of the saved vectors (verified after rounding)")(f)
    f = click.option("--template", default=DEFAULT_TEMPLATE, show_default=True,
                     help="prompt around the memory vectors, e.g. 'Recall: {memory}'")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memtok")
def cli() -> None:
    """Turn texts into memory tokens of a frozen language model, and back, exactly."""


@cli.command()
@click.argument("text", required=False)
@click.option("-f", "--file", "path", default=None, help="read the text from this file ('-': standard input)")
@click.option("-o", "--out", default=None, help="memory file to write (default: <sha256 prefix>.mem.safetensors)")
@model_option
@device_option
@recipe_options
@click.option("--keep-text", is_flag=True, help="store the text in the memory (otherwise only its sha256)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per memory")
def encode(text, path, out, model, device, recipe, max_steps, tokens, segment_tokens, template, dtype, keep_text,
           as_json) -> None:
    """Encode TEXT (or -f FILE, or standard input) into a memory file.

    \b
    printf 'The quick brown fox.' | memtok encode -o fox.safetensors
    memtok encode -f notes.txt --tokens 2 -o notes.mem.safetensors
    """
    from .header import sha256_text
    from .textio import read_text

    if text is not None and path is not None:
        raise click.UsageError("give the text as an argument or with -f, not both")
    if text is None:
        text = read_text(path)
    if not text:
        raise MemtokError("empty text: there is nothing to encode")
    out = out or f"{sha256_text(text)[:12]}.mem.safetensors"
    codec = _load_codec(model, device)
    started = time.perf_counter()
    mem = codec.encode(text, tokens=tokens, recipe=recipe, template=template, max_steps=max_steps,
                       keep_text=keep_text, dtype=dtype, segment_tokens=segment_tokens, show_progress_bar=True)
    mem.save(out)
    wall = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({"path": out, "exact": mem.exact, "steps": mem.steps, "seconds": round(wall, 3),
                               "n_tokens": mem.n_tokens, "k": mem.k, "min_margin": mem.min_margin,
                               "token_accuracy": mem.token_accuracy, "model": mem.model_name,
                               "recipe": mem.recipe["name"]}))
    verdict = "exact" if mem.exact else "NOT exact"
    pieces = f" ({len(mem.segments)} segments)" if len(mem.segments) > 1 else ""
    click.echo(f"{verdict}: {mem.n_tokens} tokens in {mem.k} vector{'s' * (mem.k > 1)}{pieces}, {mem.steps} steps, "
               f"{wall:.1f} s, margin {mem.min_margin:.2f} -> {out}", err=True)
    if not mem.exact:
        sys.exit(1)


@cli.command()
@click.argument("file")
@click.option("-o", "--out", default=None, help="write the text here (with --all: a folder) instead of standard output")
@click.option("--id", "mem_id", default=None, help="the memory to decode, when FILE is a store")
@click.option("--all", "all_", is_flag=True, help="decode every memory of a store into the folder -o")
@click.option("--unchecked", is_flag=True,
              help="write the decoded text even when it does not match the memory's sha256 (exit 1 still)")
@model_option
@device_option
def decode(file, out, mem_id, all_, unchecked, model, device) -> None:
    """Decode a memory FILE (or one or all memories of a store) back into text, byte for byte.

    The decoded text's sha256 must equal the one the memory recorded; otherwise nothing is written
    and the exit code is 1.

    \b
    memtok decode fox.safetensors
    memtok decode STORE --id 000000042
    memtok decode STORE --all -o texts/
    """
    from .memory import Memory

    if os.path.isdir(file):
        return _decode_store(file, out, mem_id, all_, unchecked, model, device)
    if mem_id is not None or all_:
        raise click.UsageError("--id and --all apply to a store (a folder), not to a memory file")
    mem = Memory.load(file)
    codec = _load_codec(model or mem.model_name, device)
    _decode_checked(codec, mem, out, unchecked)
    if out:
        click.echo(f"decoded {mem.n_tokens} tokens from {file}, sha256 checked -> {out}", err=True)


def _decode_checked(codec, mem, out: str | None, unchecked: bool) -> None:
    """Write the decoded text only when its sha256 is the memory's (or when asked to write it anyway)."""
    from .errors import DecodeMismatchError
    from .textio import write_text

    try:
        text = codec.decode(mem)
    except DecodeMismatchError as exc:
        if unchecked:
            write_text(exc.text, out)
        raise
    write_text(text, out)


def _decode_store(path, out, mem_id, all_, unchecked, model, device) -> None:
    from pathlib import Path

    from .errors import DecodeMismatchError
    from .progress import progress
    from .store import MemoryStore

    store = MemoryStore(path)
    if all_ == (mem_id is not None):
        raise click.UsageError("a store needs --id ID or --all -o DIR")
    if all_ and not out:
        raise click.UsageError("--all needs -o DIR")
    if not all_:
        mem = store[mem_id]
        _decode_checked(_load_codec(model or store.info["model"], device), mem, out, unchecked)
        return
    ids = [i for i in store if store.record(i)["status"] != "failed"]
    codec = _load_codec(model or store.info["model"], device)
    mismatched = []
    bar = progress(len(ids), "decoding", "text")
    for i in ids:
        try:
            _decode_checked(codec, store[i], str(Path(out) / f"{i}.txt"), unchecked)
        except DecodeMismatchError:
            mismatched.append(i)
        bar.update(1)
    bar.close()
    skipped = len(store) - len(ids)
    click.echo(f"decoded {len(ids) - len(mismatched)} memories ({skipped} failed texts skipped) -> {out}", err=True)
    if mismatched:
        shown = ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else "")
        raise DecodeMismatchError(f"{len(mismatched)} memories did not decode to their text's sha256 ({shown})"
                                  + (", written anyway (--unchecked)" if unchecked else ", not written"), "")


@cli.command("encode-corpus")
@click.argument("data")
@click.option("--out", "-o", required=True, help="the store folder (created, or resumed when it exists)")
@click.option("--column", default=None, help="CSV column / JSONL field / dataset column (default: chunk, text)")
@click.option("--limit", type=click.IntRange(1), default=None, help="only the first N texts, in file order")
@click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="memories per shard file")
@click.option("--keep-text", is_flag=True, help="store each text in the index and its memory")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@model_option
@device_option
@recipe_options
def encode_corpus(data, out, column, limit, batch_size, shard_size, keep_text, as_json, model, device, recipe, max_steps,
                  tokens, segment_tokens, template, dtype) -> None:
    """Encode every text of DATA into a memory store; resumable, and parallel under torchrun.

    \b
    memtok encode-corpus texts.csv --out store/
    torchrun --nproc-per-node 4 -m memtok encode-corpus texts.csv --out store/
    """
    import shlex

    from .corpus import rank_device, run_corpus
    from .sources import read_source

    source = read_source(data, column, limit)
    codec = _load_codec(model, rank_device(device))
    s = run_corpus(codec, source, out, recipe, tokens=tokens, template=template, batch_size=batch_size,
                   max_steps=max_steps, keep_text=keep_text, dtype=dtype, segment_tokens=segment_tokens,
                   shard_size=shard_size,
                   command=shlex.join(["memtok", *sys.argv[1:]]))
    if "total" in s:
        if as_json:
            click.echo(json.dumps(s))
        click.echo(f"{s['exact']} exact, {s['not_exact']} not exact, {s['failed']} failed of {s['total']}; "
                   f"{s['encoded_now']} encoded now on {s['world_size']} process(es) in {s['wall_seconds']} s"
                   f" ({s['texts_per_hour']} texts/hour), {s['resumed']} resumed -> {out}", err=True)


@cli.command()
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def info(file, as_json) -> None:
    """Show what a memory FILE holds, without loading any model."""
    from .memory import Memory

    mem = Memory.load(file)
    meta = mem.metadata()
    meta["bytes"] = mem.nbytes
    if mem.text is not None:
        from .compression import text_sizes

        meta["text_bytes"] = text_sizes(mem.text)
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False))
        return
    rows = [("model", meta["model_name"]), ("fingerprint", meta["model_fingerprint"][:16]),
            ("vectors", f"{mem.k} x {meta['hidden_size']} {mem.storage_dtype} ({mem.nbytes} bytes)"),
            ("tokens", mem.n_tokens), ("exact", mem.exact), ("template", repr(mem.template)),
            ("segments", ", ".join(f"{s['tokens']} tokens in {s['k']}" for s in mem.segments) or 1),
            ("recipe", mem.recipe.get("name")), ("steps", mem.steps), ("seconds", mem.seconds),
            ("final loss", f"{mem.final_loss:.4g}"), ("min margin", f"{mem.min_margin:.3f}"),
            ("text sha256", mem.text_sha256), ("text", repr(mem.text) if mem.text is not None else "(not kept)"),
            ("memtok", f"{mem.memtok_version} (format {mem.format_version})")]
    if "text_bytes" in meta:
        rows.append(("text bytes", ", ".join(f"{k} {v}" for k, v in meta["text_bytes"].items())))
    for key, value in rows:
        click.echo(f"{key:>12}  {value}")


@cli.command("eval")
@click.argument("data")
@click.option("--column", default=None, help="CSV column / JSONL field / dataset column (default: chunk, text)")
@click.option("--limit", type=click.IntRange(1), default=None, help="only the first N texts, in file order")
@click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=8, show_default=True,
              help="texts optimised side by side")
@click.option("--out", "-o", default=None, help="output folder (default: eval-<data>-<recipe>-k<K>)")
@model_option
@device_option
@recipe_options
def eval_(data, column, limit, batch_size, out, model, device, recipe, max_steps, tokens, segment_tokens, template,
          dtype) -> None:
    """Encode every text of DATA and report how many come back exactly.

    DATA is a CSV (column `chunk`), a JSONL file (field `text`), a plain text file (blank-line
    separated blocks) or a Hugging Face dataset name. Writes results.jsonl, summary.json,
    report.md and PNG plots into --out; run the same command again to resume.

    \b
    memtok eval ../shared/data/paper/raschka_chunks_100.csv --limit 20 --out runs/r100
    """
    import shlex
    from pathlib import Path

    from .evaluate import run_eval
    from .sources import read_source

    source = read_source(data, column, limit)
    out = out or f"eval-{Path(data).stem}-{recipe}-k{tokens}"
    codec = _load_codec(model, device)
    command = shlex.join(["memtok", "eval", *sys.argv[2:]]) if sys.argv[1:2] == ["eval"] else "memtok eval"
    s = run_eval(codec, source, out, recipe, tokens=tokens, template=template, batch_size=batch_size,
                 max_steps=max_steps, dtype=dtype, segment_tokens=segment_tokens, command=command)
    o = s["overall"]
    click.echo(f"{o['exact']}/{o['n']} exact, mean token accuracy {o['mean_token_accuracy']:.4f}, "
               f"median {o['median_steps']} steps / {o['median_seconds']} s per text "
               f"({s['encoded_now']} encoded now, {s['resumed_with']} resumed) -> {out}/report.md", err=True)


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


@cli.command()
@click.argument("data")
@click.option("--lengths", type=IntList(), default="16,32,64,96,128", show_default=True,
              help="text lengths in tokens (each text's first N tokens)")
@click.option("--tokens", "-k", type=IntList(), default="1,2,4", show_default=True, help="memory vectors to try")
@click.option("--column", default=None, help="CSV column / JSONL field / dataset column (default: chunk, text)")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="the first N texts, in file order")
@click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--out", "-o", default=None, help="output folder (default: capacity-<data>)")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=DEFAULT_RECIPE, show_default=True)
@click.option("--max-steps", type=click.IntRange(1, 1_000_000), default=None,
              help="give up on a text after this many steps (default: the recipe's)")
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True)
@click.option("--eos/--no-eos", default=True, show_default=True,
              help="end each target with EOS (memtok's exactness) or not (Kuratov et al.'s setting)")
@model_option
@device_option
def capacity(data, lengths, tokens, column, limit, batch_size, out, recipe, max_steps, template, eos, model,
             device) -> None:
    """How many tokens K memory vectors hold: the largest length every text is exact at, per K.

    \b
    memtok capacity ../shared/data/paper/raschka_chunks_1000.csv --limit 10 --lengths 16,32,64,96 --tokens 1,2,4
    """
    import shlex
    from pathlib import Path

    from .capacity import run_capacity, shown
    from .sources import read_source

    source = read_source(data, column, limit)
    out = out or f"capacity-{Path(data).stem}"
    codec = _load_codec(model, device)
    s = run_capacity(codec, source, out, lengths, tokens, recipe, template=template, batch_size=batch_size, eos=eos,
                     max_steps=max_steps, command=shlex.join(["memtok", *sys.argv[1:]]))
    for k, row in s["by_tokens"].items():
        click.echo(f"K={k}: every text exact up to {shown(row['capacity_exact'], row['cells'])} tokens, mean accuracy "
                   f">= 0.99 up to {shown(row['capacity_accuracy_99'], row['cells'])}", err=True)
    click.echo(f"{s['encoded_now']} texts encoded now in {s['wall_seconds_now']} s -> {out}/report.md", err=True)


def main(args: list[str] | None = None) -> None:
    """Entry point: one line on standard error for any failure, exit 2 for bad input."""
    debug = os.environ.get("MEMTOK_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="memtok", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"memtok: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("memtok: interrupted", err=True)
        sys.exit(130)
    except MemtokError as exc:
        if debug:
            raise
        click.echo(f"memtok: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("memtok: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the one place that turns any failure into one line
        if debug:
            raise
        click.echo(f"memtok: error: {type(exc).__name__}: {exc} (MEMTOK_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
