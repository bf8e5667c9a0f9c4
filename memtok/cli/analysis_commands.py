"""`memtok detect`: are these input vectors token embeddings, or a memory (or other soft prompt)?"""

from __future__ import annotations

import json
import sys

import click

from ..errors import MemtokError
from .main import cli, load_codec, memory_model
from .options import model_options

EMBEDS_KEY = "embeds"


def _read_vectors(path: str):
    """(vectors, model it names or None) from a memory file or a safetensors file of `embeds` [n, d]."""
    import torch
    from safetensors import SafetensorError, safe_open

    from ..format.memory import FORMAT, Memory

    try:
        with safe_open(path, framework="pt") as f:
            is_memory = (f.metadata() or {}).get("format") == FORMAT
            if not is_memory:
                if EMBEDS_KEY not in f.keys():  # noqa: SIM118 - safe_open is not a dict
                    raise MemtokError(f"{path} is neither a memory nor a safetensors file with an {EMBEDS_KEY!r} tensor")
                shape = f.get_slice(EMBEDS_KEY).get_shape()
                if len(shape) != 2 or not shape[0] or not shape[1]:
                    raise MemtokError(f"{path}: {EMBEDS_KEY!r} must have the shape [n, d], not {list(shape)}")
                vectors = f.get_tensor(EMBEDS_KEY)
    except FileNotFoundError:
        raise MemtokError(f"no such file: {path}") from None
    except (SafetensorError, OSError) as exc:
        raise MemtokError(f"{path} is not a safetensors file ({exc})") from None
    if is_memory:
        return Memory.load(path), None
    if not vectors.is_floating_point() or not bool(torch.isfinite(vectors).all()):
        raise MemtokError(f"{path}: {EMBEDS_KEY!r} must hold finite floating-point numbers")
    return None, vectors


@cli.command(short_help="Say whether FILE's vectors are ordinary token embeddings.")
@click.argument("file")
@click.option("--threshold", type=click.FloatRange(0, min_open=True), default=None,
              help="distance to the nearest token's vector, relative to its norm, above which a vector is no "
                   "token's (default: twice bfloat16's rounding, 2^-7)")
@click.option("--json", "as_json", is_flag=True, help="print the findings as one JSON object")
@model_options
def detect(file: str, threshold: float | None, as_json: bool, model: str | None, device: str | None) -> None:
    """Say whether the input vectors in FILE are ordinary token embeddings of the model.

    FILE is a memory, or a .safetensors file of input vectors under the key `embeds` [n, d] (as a
    service that takes `inputs_embeds` receives them). Exit 0 when every vector is a token's,
    1 when any is not.

    \b
    memtok detect fox.safetensors
    memtok detect request.safetensors --model smollm2-135m --json
    """
    from ..analysis.detect import THRESHOLD
    from ..analysis.detect import detect as find

    mem, vectors = _read_vectors(file)
    codec = load_codec(memory_model(model, mem and mem.model_name, mem and mem.model_source, file), device)
    if mem is not None:
        codec.check_decodable(mem)
        vectors = codec.inputs(mem.vectors, mem.storage_dtype)
    if vectors.shape[1] != codec.lm.hidden_size:
        raise MemtokError(f"{file}: vectors of {vectors.shape[1]} dimensions; {codec.lm.name} takes {codec.lm.hidden_size}")
    limit = threshold or THRESHOLD
    findings = find(codec.lm, vectors, limit)
    odd = [f for f in findings if not f.token_like]
    if as_json:
        click.echo(json.dumps({"file": file, "model": codec.lm.name, "threshold": limit, "vectors": len(findings),
                               "not_token_like": len(odd), "findings": [f.to_dict() for f in findings]}))
    else:
        for f in findings:
            token = codec.lm.detokenize([f.nearest_token])
            click.echo(f"vector {f.index}: nearest token {token!r} ({f.nearest_token}) at {f.distance:.4g} of its norm, "
                       f"norm {f.norm_ratio:.2f}x the median token's: {'a token' if f.token_like else 'NOT a token'}")
    click.echo(f"{len(odd)} of {len(findings)} vectors are no token's embedding (distance > {limit:.4g} of the nearest "
               f"token's norm)" + (f"; {file} is a memory" if mem is not None else ""), err=True)
    if odd:
        sys.exit(1)


@cli.command(short_help="How fragile a run's memories are: noise, rounding, moving.")
@click.argument("run")
@click.option("--out", "-o", default=None, help="folder for probe.jsonl, probe.md and probe.png (default: RUN/probe)")
@click.option("--noise", default=None, metavar="R,R,...",
              help="noise norms relative to each vector's own (default: 1e-4,1e-3,1e-2,3e-2,0.1,0.3)")
@click.option("--template", default="Recall: {memory}", show_default=True, help="the prompt the memories are moved into")
@click.option("--limit", type=click.IntRange(1), default=None, help="only the first N memories")
@model_options
def probe(run: str, out: str | None, noise: str | None, template: str, limit: int | None, model: str | None,
          device: str | None) -> None:
    """How fragile the memories of RUN (an eval folder or a store) are: noise on their vectors,
    rounding to each storage dtype, and another prompt, each decoded again.

    \b
    memtok probe runs/r100 --limit 20
    """
    from pathlib import Path

    from ..analysis.probe import NOISE, probe_memory, run_memories, summarise_probe
    from ..analysis.report import write_probe
    from ..encode.progress import progress

    levels = NOISE if noise is None else _floats(noise)
    memories = list(run_memories(run))[:limit]
    if not memories:
        raise MemtokError(f"{run} holds no memories")
    first = memories[0][1]
    codec = load_codec(memory_model(model, first.model_name, first.model_source, run), device)
    bar = progress(len(memories), "probing", "mem")
    rows = []
    for name, mem in memories:
        codec.check_decodable(mem)
        rows.append(probe_memory(codec, name, mem, levels, template))
        bar.update(1)
    bar.close()
    summary = summarise_probe(rows)
    folder = Path(out or Path(run) / "probe")
    write_probe(folder, rows, summary)
    click.echo(f"{summary['exact_as_made']}/{summary['memories']} exact as made; under noise "
               + ", ".join(f"{lv}: {v:.2f}" for lv, v in summary["noise"].items())
               + f"; moved into {template!r}: {summary['moved']:.2f} -> {folder}/probe.md", err=True)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint="--noise") from None
    if not all(v > 0 for v in values):
        raise click.BadParameter("every noise level must be positive", param_hint="--noise")
    return values


@cli.command(short_help="Rank a store's memories by how likely each holds QUERY.")
@click.argument("store")
@click.argument("query")
@click.option("-n", "--top", "top_n", type=click.IntRange(1), default=5, show_default=True, help="memories to show")
@click.option("--method", type=click.Choice(["likelihood", "vector"]), default="likelihood", show_default=True,
              help="likelihood: the model's probability of the query after each memory; vector: cosine of the "
                   "query's teacher embedding with each semantic memory's code (no memory is made of the query)")
@click.option("--scoring", type=click.Choice(["mean", "skip1", "z"]), default="skip1", show_default=True,
              help="likelihood: the mean log-probability of the query's tokens (mean), of all but the first "
                   "(skip1), or of each token's standardised across the store (z)")
@click.option("--teacher", default=None, help="vector: the teacher the memories were made with (default: the one "
                                               "they record); another is refused")
@click.option("--decode", "decode_hits", is_flag=True, help="decode each hit and show its text")
@click.option("--batch-size", "-b", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="likelihood: memory segments scored in one pass")
@click.option("--json", "as_json", is_flag=True, help="print the hits as JSON lines")
@model_options
def search(store: str, query: str, top_n: int, method: str, scoring: str, teacher: str | None, decode_hits: bool,
           batch_size: int, as_json: bool, model: str | None, device: str | None) -> None:
    """The memories of STORE most likely to hold QUERY, without their texts. QUERY `-` reads one
    query a line from standard input: the model loads once for them all.

    \b
    memtok search store/ "attention is computed from queries and keys" -n 3 --decode
    memtok search store/ - --json < queries.txt
    """
    import time

    from ..store import MemoryStore

    queries = [q for q in (line.strip() for line in sys.stdin)] if query == "-" else [query]
    queries = [q for q in queries if q]
    if not queries:
        raise click.BadParameter("standard input holds no query (one a line)", param_hint="QUERY")
    memories = MemoryStore(store)
    codec = load_codec(memory_model(model, memories.info["model"], memories.info.get("model_source"), store), device)
    began = time.perf_counter()
    for asked in queries:
        hits = memories.search(codec, asked, top_n, method, batch_size, decode_hits, show_progress_bar=True,
                               scoring=scoring, teacher=teacher)
        if len(queries) > 1 and not as_json:
            click.echo(f"query: {asked}")
        for rank, h in enumerate(hits, 1):
            if as_json:
                shown = {"text": h.text, "mismatch": h.mismatch} if decode_hits else {}
                many = {"query": asked} if len(queries) > 1 else {}
                click.echo(json.dumps({**many, "rank": rank, "id": h.id, "score": h.score, **shown}, ensure_ascii=False))
            else:
                text = "  (decoded text did not match its sha256)" if h.mismatch else f"  {h.text!r}"
                click.echo(f"{rank}. {h.id}  {h.score:.4f}" + (text if decode_hits else ""))
    click.echo(f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}, {len(hits)} of {len(memories)} memories "
               f"each, by {method} in {time.perf_counter() - began:.1f} s", err=True)
