"""`memtok detect`: are these input vectors token embeddings, or a memory (or other soft prompt)?"""

from __future__ import annotations

import json
import sys

import click

from ..errors import MemtokError
from .main import cli, load_codec
from .options import model_options

EMBEDS_KEY = "embeds"


def _read_vectors(path: str):
    """(vectors, model it names or None) from a memory file or a safetensors file of `embeds` [n, d]."""
    import torch
    from safetensors import SafetensorError, safe_open

    from ..memory import FORMAT, Memory

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


@cli.command()
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
    codec = load_codec(model or (mem.model_name if mem else None), device)
    if mem is not None:
        codec._check_decodable(mem)
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
