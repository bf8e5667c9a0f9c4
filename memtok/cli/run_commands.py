"""`memtok eval`, `capacity` and `encode-corpus`: runs over a dataset, each resumable in its folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..settings.config import EncodeConfig
from .main import cli, command_line, load_codec
from .options import IntList, data_options, encode_options, log_steps_option, model_options


@cli.command("eval", short_help="Encode every text of DATA; report how many come back exact.")
@click.argument("data")
@data_options
@click.option("--out", "-o", default=None, help="output folder (default: eval-<data>-<recipe>-k<K>)")
@model_options
@encode_options()
@log_steps_option
@click.option("--beams", type=IntList(), default=None, metavar="N,N,...",
              help="also decode each memory by beam search of these widths, and report where each leaves the text")
def eval_(data: str, column: str | None, limit: int | None, rows: str | None, split: str | None, subset: str | None,
          out: str | None, model: str | None, device: str | None, config: EncodeConfig, log_steps: int | None,
          beams: list[int] | None) -> None:
    """Encode every text of DATA and report how many come back exactly.

    DATA is a CSV or TSV (column `chunk`), a JSONL, JSON-array or parquet file (field `text`), a
    plain text file (blank-line separated blocks), or a Hugging Face dataset (a Hub id or a folder in
    the Hub's layout; --subset, --split), streamed. Writes results.jsonl, summary.json, report.md and
    PNG plots into --out; run the same command again to resume.

    \b
    memtok eval ../shared/data/paper/raschka_chunks_100.csv --limit 20 --out runs/r100
    memtok eval Salesforce/wikitext --subset wikitext-2-raw-v1 --split test --limit 20 --out runs/wiki
    """
    from ..runs.evaluate import run_eval
    from ..runs.sources import read_source
    from ..start.start import start_path

    source = read_source(data, column, limit, rows, split, subset)
    codec = load_codec(model, device)
    out = out or f"eval-{Path(data).stem}-{config.decided(start_path(codec.lm) is not None).recipe.name}-k{config.k}"
    s = run_eval(codec, source, out, config, command=command_line(), log_steps=log_steps, beams=beams or [])
    o = s["overall"]
    click.echo(f"{o['exact']}/{o['n']} exact, mean token accuracy {o['mean_token_accuracy']:.4f}, "
               f"median {o['median_steps']} steps / {o['median_seconds']} s per text"
               + (f", median payload {o['median_payload_bytes']} bytes ({o['median_to_zstd']}x the text's zstd size)"
                  if "median_to_zstd" in o else "")
               + "".join(f"; beams {b['beams']}: {b['exact']}/{b['decoded']} exact" for b in s["beams"])
               + f" ({s['encoded_now']} encoded now, {s['resumed_with']} resumed) -> {out}/report.md", err=True)


@cli.command(short_help="The longest text K vectors hold exactly, per K.")
@click.argument("data")
@click.option("--lengths", type=IntList(), default="16,32,64,96,128", show_default=True,
              help="text lengths in tokens (each text's first N tokens)")
@data_options
@click.option("--out", "-o", default=None, help="output folder (default: capacity-<data>)")
@click.option("--eos/--no-eos", default=True, show_default=True,
              help="end each target with EOS (memtok's exactness) or not (Kuratov et al.'s setting)")
@model_options
@encode_options(many_k=True, texts=False)
@log_steps_option
@click.option("--beams", type=IntList(), default=None, metavar="N,N,...",
              help="also decode each memory by beam search of these widths, and report where each leaves it")
def capacity(data: str, lengths: list[int], column: str | None, limit: int | None, rows: str | None,
             split: str | None, subset: str | None, out: str | None, eos: bool, model: str | None, device: str | None,
             config: EncodeConfig, ks: list[int], log_steps: int | None, beams: list[int] | None) -> None:
    """How many tokens K memory vectors hold: the largest length every text is exact at, per K
    (on the first 10 texts of DATA unless --limit says otherwise).

    \b
    memtok capacity ../shared/data/paper/raschka_chunks_1000.csv --limit 10 --lengths 16,32,64,96 -k 1,2,4
    """
    from ..runs.capacity import run_capacity, shown
    from ..runs.sources import read_source

    source = read_source(data, column, limit or 10, rows, split, subset)
    out = out or f"capacity-{Path(data).stem}"
    codec = load_codec(model, device)
    s = run_capacity(codec, source, out, lengths, ks, config, eos=eos, command=command_line(), log_steps=log_steps,
                     beams=beams or [])
    for k, row in s["by_k"].items():
        click.echo(f"K={k}: every text exact up to {shown(row['capacity_exact'], row['cells'])} tokens, mean accuracy "
                   f">= 0.99 up to {shown(row['capacity_accuracy_99'], row['cells'])}", err=True)
    click.echo(f"{s['encoded_now']} texts encoded now in {s['wall_seconds_now']} s -> {out}/report.md", err=True)


@cli.command("encode-corpus", short_help="Encode every text of DATA into a memory store.")
@click.argument("data")
@data_options
@click.option("--out", "-o", required=True, help="the store folder (created, or resumed when it exists)")
@click.option("--shard-size", type=click.IntRange(1, 100_000), default=256, show_default=True,
              help="memories per shard file")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@model_options
@encode_options()
def encode_corpus(data: str, column: str | None, limit: int | None, rows: str | None, split: str | None,
                  subset: str | None, out: str, shard_size: int, as_json: bool,
                  model: str | None, device: str | None, config: EncodeConfig) -> None:
    """Encode every text of DATA into a memory store; resumable, and parallel under torchrun.

    \b
    memtok encode-corpus texts.csv --out store/
    torchrun --nproc-per-node 4 -m memtok encode-corpus texts.csv --out store/
    """
    from ..runs.encode_corpus import rank_device, run_corpus, watch_launcher
    from ..runs.sources import read_source

    watch_launcher()
    source = read_source(data, column, limit, rows, split, subset)
    codec = load_codec(model, rank_device(device))
    s = run_corpus(codec, source, out, config, shard_size=shard_size, command=command_line())
    if "total" in s:
        if as_json:
            click.echo(json.dumps(s))
        click.echo(f"{s['exact']} exact, {s['not_exact']} not exact, {s['failed']} failed of {s['total']}; "
                   f"{s['encoded_now']} encoded now on {s['world_size']} process(es) in {s['wall_seconds']} s"
                   f" ({s['texts_per_hour']} texts/hour), {s['resumed']} resumed; payload {s['payload_bytes']} bytes, "
                   f"zstd {s['zstd_bytes_each']} of each text alone, {s['zstd_bytes_together']} of all together"
                   + (f"; {s['semantic_keys']} semantic keys" if s["semantic_keys"] else "") + f" -> {out}", err=True)


@cli.command(short_help="Set several models' eval or capacity folders side by side.")
@click.argument("folders", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="folder for comparison.md, comparison.json and comparison.png")
def compare(folders: tuple[str, ...], out: str) -> None:
    """Set several models' eval (or capacity) folders side by side: exact rate and steps against
    length, one line per model.

    \b
    memtok compare docs/results/raschka100-k1 docs/results/gemma3-raschka100-k1 --out docs/results/models-r100
    """
    from ..runs.compare import compare as table_of
    from ..runs.compare import write_comparison

    table = table_of(list(folders))
    write_comparison(table, Path(out))
    click.echo(f"{len(folders)} runs, {len(table)} rows -> {out}/comparison.md", err=True)
