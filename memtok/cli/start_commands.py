"""`memtok train-start`: train a learned start for a model, resumable in its folder."""

from __future__ import annotations

import click

from .main import cli, load_codec
from .options import model_options


@cli.command("train-start")
@click.option("--out", "-o", required=True, help="training folder (run the same command again to resume)")
@click.option("--steps", type=click.IntRange(1), default=4000, show_default=True)
@click.option("--batch-size", "-b", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--width", type=click.IntRange(8, 65536), default=512, show_default=True, help="the network's hidden width")
@click.option("--tokens", type=(click.IntRange(1), click.IntRange(1)), default=(8, 40), show_default=True,
              help="shortest and longest training piece, in tokens")
@click.option("--extra", multiple=True, help="more training text: a CSV / JSONL / text file (never evaluation rows)")
@click.option("--rows", default=None, help="with --extra: a row range START:END of each file, e.g. 100:")
@model_options
def train_start_command(out: str, steps: int, batch_size: int, lr: float, width: int, tokens: tuple[int, int],
                        extra: tuple[str, ...], rows: str | None, model: str | None, device: str | None) -> None:
    """Train a network that proposes each text's starting memory vector, for one model.

    It reads CPython's documentation, chatterbot-corpus's dialogues (when installed) and any
    --extra files, writes state.pt (resumable), log.jsonl and start.safetensors into --out, and
    ends with the start's held-out token accuracy beside the mean embedding's. Put the file in
    the folder named by MEMTOK_STARTS (or memtok/starts/) and encoding starts from it.

    \b
    memtok train-start --out runs/start-smollm2 --extra ../shared/data/paper/raschka_chunks_100.csv --rows 100:
    """
    from ..progress import progress
    from ..runs.sources import read_rows, read_source
    from ..training.start_training import TrainConfig, train_start
    from ..training.texts import training_pieces

    if tokens[0] > tokens[1]:
        raise click.BadParameter(f"the shortest piece ({tokens[0]}) is longer than the longest ({tokens[1]})",
                                 param_hint="--tokens")
    texts = [t for path in extra for t in read_rows(read_source(path).texts, rows)]
    codec = load_codec(model, device)
    train, held = training_pieces(codec.lm, texts, tokens)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, width=width, min_tokens=tokens[0],
                      max_tokens=tokens[1])
    click.echo(f"memtok: {len(train)} training pieces, {len(held)} held out, {steps} steps", err=True)
    bar = progress(steps, "training", "step")

    def on_step(step: int, loss: float, accuracy: float) -> None:
        bar.n = step - 1
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", refresh=False)
        bar.update(1)

    try:
        info = train_start(codec.lm, train, held, out, cfg, on_step)
    finally:
        bar.close()
    fig = info["held_out"]
    click.echo(f"step {info['step']}: held-out token accuracy before any optimisation step "
               f"{fig['learned']['token_accuracy']:.4f} (mean embedding {fig['mean']['token_accuracy']:.4f}), "
               f"loss {fig['learned']['loss']:.3f} ({fig['mean']['loss']:.3f}) -> {out}/start.safetensors", err=True)
