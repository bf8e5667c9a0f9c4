"""`memtok encode`, `decode` and `info`: one text or one memory file at a time (or one memory of a store)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..errors import MemtokError
from ..settings.config import EncodeConfig
from .main import cli, load_codec, memory_model
from .options import encode_options, log_steps_option, model_options

DECODE_CHUNK = 256  # memories a store's --all decodes together: enough to batch, few enough to hold


@cli.command(short_help="Encode TEXT (or -f FILE, or stdin) into a memory file.")
@click.argument("text", required=False)
@click.option("-f", "--file", "path", default=None, help="read the text from this file ('-': standard input)")
@click.option("-o", "--out", default=None, help="memory file to write (default: <sha256 prefix>.mem.safetensors)")
@model_options
@encode_options()
@log_steps_option
@click.option("--json", "as_json", is_flag=True, help="print one JSON object per memory")
def encode(text: str | None, path: str | None, out: str | None, model: str | None, device: str | None,
           config: EncodeConfig, log_steps: int | None, as_json: bool) -> None:
    """Encode TEXT (or -f FILE, or standard input) into a memory file.

    \b
    printf 'The quick brown fox.' | memtok encode -o fox.safetensors
    memtok encode -f notes.txt -k 2 -o notes.mem.safetensors
    """
    from ..format.header import sha256_text
    from .textio import read_text

    if text is not None and path is not None:
        raise click.UsageError("give the text as an argument or with -f, not both")
    if text is None:
        text = read_text(path)
    if not text:
        raise MemtokError("empty text: there is nothing to encode")
    out = out or f"{sha256_text(text)[:12]}.mem.safetensors"
    codec = load_codec(model, device)
    settings = codec.resolve(config)  # once: the plan printed is the one encoded
    click.echo(f"plan: {codec.plan(text, settings)}", err=True)
    began = time.perf_counter()
    if log_steps:
        from ..encode.steplog import StepLog

        steps_path = f"{out}.steps.jsonl"
        Path(steps_path).unlink(missing_ok=True)  # a new memory, a new curve
        with StepLog(steps_path, log_steps, lambda key: key) as log:
            mem = codec.encode(text, settings, show_progress_bar=True, on_step=log)
    else:
        mem = codec.encode(text, settings, show_progress_bar=True)
    mem.save(out)
    wall = time.perf_counter() - began
    if as_json:
        click.echo(json.dumps({"path": out, "exact": mem.exact, "steps": mem.steps, "seconds": round(wall, 3),
                               "n_tokens": mem.n_tokens, "k": mem.k, "min_margin": mem.min_margin,
                               "token_accuracy": mem.token_accuracy, "model": mem.model_name,
                               "recipe": mem.recipe["name"], "dtype": mem.storage_dtype, **mem.sizes()}))
    verdict = "exact" if mem.exact else "NOT exact"
    pieces = f" ({len(mem.segments)} segments)" if len(mem.segments) > 1 else ""
    click.echo(f"{verdict}: {mem.n_tokens} tokens in {mem.k} vector{'s' * (mem.k > 1)}{pieces}, {mem.steps} steps, "
               f"{wall:.1f} s, margin {mem.min_margin:.2f}, payload {_size_line(mem.sizes())} -> {out}", err=True)
    if not mem.exact:
        sys.exit(1)


def _size_line(sizes: dict) -> str:
    """'1234 bytes (2.10x the text's zstd size, 4.00x the model's bound)' from `Memory.sizes()`: how
    many times larger the memory is, not a compression ratio."""
    ratios = [f"{sizes[key]:.2f}x {name}" for key, name in (("to_zstd", "the text's zstd size"),
                                                            ("to_entropy", "the model's bound")) if key in sizes]
    return f"{sizes['payload_bytes']} bytes" + (f" ({', '.join(ratios)})" if ratios else "")


@cli.command(short_help="Decode a memory file (or a store's) back into its text.")
@click.argument("file")
@click.option("-o", "--out", default=None, help="write the text here (with --all: a folder) instead of standard output")
@click.option("--id", "mem_id", default=None, help="the memory to decode, when FILE is a store")
@click.option("--all", "all_", is_flag=True, help="decode every memory of a store into the folder -o")
@click.option("--unchecked", is_flag=True,
              help="write the decoded text even when it does not match the memory's sha256 (exit 1 still)")
@click.option("--beams", type=click.IntRange(1, 64), default=1, show_default=True,
              help="beam search of this width instead of greedy decoding (a memory is made for greedy)")
@model_options
def decode(file: str, out: str | None, mem_id: str | None, all_: bool, unchecked: bool, beams: int, model: str | None,
           device: str | None) -> None:
    """Decode a memory FILE (or one or all memories of a store) back into text, byte for byte.

    The decoded text's sha256 must equal the one the memory recorded; otherwise nothing is written
    and the exit code is 1.

    \b
    memtok decode fox.safetensors
    memtok decode STORE --id 000000042
    memtok decode STORE --all -o texts/
    """
    from ..format.memory import Memory

    if os.path.isdir(file):
        return _decode_store(file, out, mem_id, all_, unchecked, model, device, beams)
    if mem_id is not None or all_:
        raise click.UsageError("--id and --all apply to a store (a folder), not to a memory file")
    mem = Memory.load(file)
    codec = load_codec(memory_model(model, mem.model_name, mem.model_source, file), device)
    _decode_checked(codec, mem, out, unchecked, beams)
    if out:
        click.echo(f"decoded {mem.n_tokens} tokens from {file}, sha256 checked -> {out}", err=True)


def _decode_checked(codec, mem, out: str | None, unchecked: bool, beams: int = 1) -> None:
    """Write the decoded text only when its sha256 is the memory's (or when asked to write it anyway)."""
    from ..errors import DecodeMismatchError
    from .textio import write_text

    try:
        text = codec.decode(mem, beams=beams)
    except DecodeMismatchError as exc:
        if unchecked:
            write_text(exc.text, out)
        raise
    write_text(text, out)


def _decode_store(path, out, mem_id, all_, unchecked, model, device, beams) -> None:
    from ..encode.progress import progress
    from ..errors import DecodeMismatchError
    from ..format.header import sha256_text
    from ..store import MemoryStore
    from .textio import write_text

    store = MemoryStore(path)
    store_model = memory_model(model, store.info["model"], store.info.get("model_source"), path)
    if all_ == (mem_id is not None):
        raise click.UsageError("a store needs --id ID or --all -o DIR")
    if all_ and not out:
        raise click.UsageError("--all needs -o DIR")
    if not all_:
        mem = store[mem_id]
        _decode_checked(load_codec(store_model, device), mem, out, unchecked, beams)
        return
    ids = [i for i in store if store.record(i)["status"] != "failed"]
    codec = load_codec(store_model, device)
    mismatched = []
    bar = progress(len(ids), "decoding", "text")
    for start in range(0, len(ids), DECODE_CHUNK):  # a chunk's memories decode together, bounded in memory
        chunk = ids[start:start + DECODE_CHUNK]
        mems = [store[i] for i in chunk]
        for i, mem, text in zip(chunk, mems, codec.decode(mems, check=False, beams=beams, show_progress_bar=False)):
            matches = sha256_text(text) == mem.text_sha256
            if matches or unchecked:
                write_text(text, str(Path(out) / f"{i}.txt"))
            if not matches:
                mismatched.append(i)
        bar.update(len(chunk))
    bar.close()
    skipped = len(store) - len(ids)
    click.echo(f"decoded {len(ids) - len(mismatched)} memories ({skipped} failed texts skipped) -> {out}", err=True)
    if mismatched:
        shown = ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else "")
        raise DecodeMismatchError(f"{len(mismatched)} memories did not decode to their text's sha256 ({shown})"
                                  + (", written anyway (--unchecked)" if unchecked else ", not written"), "")


@cli.command(short_help="Show what a memory FILE holds, without loading a model.")
@click.argument("file")
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def info(file, as_json) -> None:
    """Show what a memory FILE holds, without loading any model."""
    from ..format.memory import Memory

    mem = Memory.load(file)
    meta = mem.metadata()
    meta["bytes"] = mem.nbytes
    meta["sizes"] = mem.sizes()
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True, ensure_ascii=False))
        return
    rows = [("model", meta["model_name"]), ("fingerprint", meta["model_fingerprint"][:16]),
            ("vectors", f"{mem.k} x {meta['hidden_size']} {mem.storage_dtype} ({mem.nbytes} bytes)"),
            ("payload", _size_line(meta["sizes"])),
            ("tokens", mem.n_tokens), ("exact", mem.exact), ("template", repr(mem.template)),
            ("segments", ", ".join(f"{s['tokens']} tokens in {s['k']}" for s in mem.segments) or 1),
            ("source", mem.model_source or "(not recorded)"), ("recipe", mem.recipe.get("name")),
            ("start", mem.start or "(not recorded)"), ("steps", mem.steps),
            ("seconds", f"{mem.seconds} (share of its run)" + (f", {mem.elapsed_seconds} first to last pass"
                                                               if mem.elapsed_seconds is not None else "")),
            ("final loss", f"{mem.final_loss:.4g}"), ("min margin", f"{mem.min_margin:.3f}"),
            ("text sha256", mem.text_sha256), ("text", repr(mem.text) if mem.text is not None else "(not kept)"),
            ("memtok", f"{mem.memtok_version} (format {mem.format_version})")]
    if mem.text_sizes:
        rows.append(("text bytes", ", ".join(f"{k} {v}" for k, v in mem.text_sizes.items())))
    if mem.entropy_bits is not None:
        bound = f"{meta['sizes']['entropy_bytes']} bytes ({mem.entropy_bits:.0f} bits: the text's cross-entropy under the model)"
        rows.append(("model bound", bound))
    for key, value in rows:
        click.echo(f"{key:>12}  {value}")
