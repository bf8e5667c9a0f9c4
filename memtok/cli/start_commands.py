"""`memtok train-start`: train a learned start for a model, resumable in its folder."""

from __future__ import annotations

from pathlib import Path

import click

from ..training.config import NETS_READ_CODES, TrainConfig
from ..training.text_sources import TEXT_SOURCES
from .main import cli, load_codec
from .options import model_options


@cli.command("train-start", short_help="Train a model's learned start (the first guess of a memory).")
@click.option("--out", "-o", required=True, help="training folder (run the same command again to resume)")
@click.option("--steps", type=click.IntRange(1), default=TrainConfig.steps, show_default=True,
              help="optimiser steps of the network (the rate's warm-up and cosine decay span them)")
@click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=TrainConfig.batch_size, show_default=True,
              help="training pieces a step (shared among processes under torchrun)")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=TrainConfig.lr, show_default=True,
              help="the network's peak learning rate (AdamW)")
@click.option("--width", type=click.IntRange(8, 65536), default=512, show_default=True, help="the network's hidden width")
@click.option("--net", type=click.Choice(list(NETS_READ_CODES)), default=TrainConfig.net, show_default=True,
              help="pooled-mlp: the states mean-pooled; attention: a query per vector over every position, told "
                   "the semantic code")
@click.option("--budget", "budget_minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="stop after this many minutes (the same command resumes)")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast (on a GPU)")
@click.option("--unroll", type=click.IntRange(0, 64), default=TrainConfig.unroll, show_default=True,
              help="train on the loss after this many of the encode's steps from the guess (0: the guess's own)")
@click.option("--recipe", default=TrainConfig.recipe, show_default=True, help="the recipe --unroll steps with")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="begin from this start file's network (e.g. the shipped one)")
@click.option("--piece-tokens", type=(click.IntRange(1), click.IntRange(1)), default=(8, 40), show_default=True,
              help="shortest and longest training piece, in tokens")
@click.option("--text", "text_sources", default=",".join(TEXT_SOURCES), show_default=True,
              help="the training text's sources (memtok.training.text_sources; make train-text installs them)")
@click.option("--extra", multiple=True, help="more training text: a CSV / JSONL / text file (never evaluation rows)")
@click.option("--rows", default=None, help="with --extra: a row range START:END of each file, e.g. 100:")
@model_options
def train_start_command(out: str, steps: int, batch_size: int, lr: float, width: int, net: str,
                        budget_minutes: float | None, bf16: bool, unroll: int, recipe: str, init_from: str | None,
                        piece_tokens: tuple[int, int], text_sources: str, extra: tuple[str, ...],
                        rows: str | None, model: str | None, device: str | None) -> None:
    """Train a network that proposes each text's starting memory vector, for one model.

    From the --text sources installed and --extra files, into --out: state.pt (resumable), log.jsonl,
    pieces.safetensors (the text, tokenised once), start.safetensors, snapshots at 1k, 2k, 4k ...
    examples. Put the file in MEMTOK_STARTS. Under torchrun each process takes a share of every batch (DDP).

    \b
    memtok train-start --out runs/start-smollm2
    memtok train-start --out runs/unrolled --unroll 4 --init-from memtok/starts/smollm2-135m.safetensors
    torchrun --nproc-per-node 8 -m memtok train-start --device cuda --bf16 --model DIR --out runs/s
    """
    from ..encode.progress import progress
    from ..runs.encode_corpus import distributed, rank_device
    from ..training.start_training import train_start
    from ..training.texts import training_pieces

    if piece_tokens[0] > piece_tokens[1]:
        raise click.BadParameter(f"the shortest piece ({piece_tokens[0]}) is longer than the longest "
                                 f"({piece_tokens[1]})", param_hint="--piece-tokens")
    labels = _extra_texts(extra, rows)
    device = rank_device(device)  # under torchrun each process on its own GPU, averaging gradients over NCCL
    rank, world = distributed("cpu:gloo,cuda:nccl" if str(device).startswith("cuda") else "gloo")
    codec = load_codec(model, device)
    cfg = TrainConfig(net=net, steps=steps, batch_size=batch_size, lr=lr, width=width, min_tokens=piece_tokens[0],
                      max_tokens=piece_tokens[1], bf16=bf16, unroll=unroll, recipe=recipe,
                      init_from=None if init_from is None else str(Path(init_from).resolve()))
    Path(out).mkdir(parents=True, exist_ok=True)
    pieces = training_pieces(codec.lm, [n for n in text_sources.split(",") if n], labels,
                             (cfg.min_tokens, cfg.max_tokens), cache=Path(out) / "pieces.safetensors")
    train, held, named = pieces.train, pieces.held, pieces.sources
    click.echo(f"memtok: {net} start, {len(train)} training pieces, {len(held)} held out, {steps} steps of "
               f"{batch_size}, unroll {unroll} ({recipe}), from:\n  " + "\n  ".join(named), err=True)
    bar = progress(steps, "training", "step", disable=rank > 0)

    def on_step(step: int, loss: float, accuracy: float) -> None:
        bar.n = step - 1
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", refresh=False)
        bar.update(1)

    try:
        info = train_start(codec.lm, train, held, out, cfg, on_step, named,
                           None if budget_minutes is None else budget_minutes * 60)
    finally:
        bar.close()
        if world > 1:
            import torch

            torch.distributed.destroy_process_group()
    if not rank:
        click.echo(_summary(info, steps, unroll, out), err=True)


def _extra_texts(extra: tuple[str, ...], rows: str | None) -> dict[str, list[str]]:
    """The --extra files' texts (their --rows), by a label that says which rows."""
    from ..runs.sources import read_rows, read_source

    chosen = {path: read_rows(read_source(path).texts, rows) for path in extra}
    for path, some in chosen.items():
        if not some:
            raise click.BadParameter(f"{rows} selects no row of {path}", param_hint="--rows")
    return {f"{Path(p).name} rows {rows or ':'}": texts for p, texts in chosen.items()}


def _summary(info: dict, steps: int, unroll: int, out: str) -> str:
    fig = info["held_out"]
    after = f"+{unroll}" if unroll else ""
    line = (f"step {info['step']} of {steps} ({info['examples']} examples, {info['seconds']} s): held-out token "
            f"accuracy before any optimisation step {fig['learned']['token_accuracy']:.4f} (mean embedding "
            f"{fig['mean']['token_accuracy']:.4f}), loss {fig['learned']['loss']:.3f} ({fig['mean']['loss']:.3f})")
    if after:
        line += (f"; after {unroll} steps, the loss it trains on: {fig['learned' + after]['loss']:.3f} (mean "
                 f"embedding {fig['mean' + after]['loss']:.3f})")
    return f"{line} -> {out}/start.safetensors"
