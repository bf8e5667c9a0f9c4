"""Loading a causal LM and its tokenizer as memtok's `FrozenLM`: by name (the embedded default, a
`.gguf` file, a folder, a hub id) or as objects already loaded, checked to take input vectors,
frozen, in the numerics memories are verified in, and fingerprinted.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator

import torch

from ..errors import MemtokError
from .dtypes import MODEL_DTYPES, QUANTISED
from .embedded import packaged, packaged_model_dir
from .identity import describe
from .model import FrozenLM
from .placement import TORCH_DTYPES, check_device, default_device, fix_numerics, placement_of, quantisation

# A Hugging Face hub id: "name" or "owner/name", optionally "@revision" (a commit, branch or tag);
# what is not a local folder and has this form goes to the hub
HUB_ID = re.compile(r"(?P<id>(?!\.)[\w.-]+(/(?!\.)[\w.-]+)?)(@(?P<revision>[\w.-]+))?")


def check_takes_vectors(model: torch.nn.Module, name: str) -> None:
    """Refuse a model whose forward pass cannot be given input vectors: no memory could reach it."""
    if "inputs_embeds" not in inspect.signature(model.forward).parameters:
        raise MemtokError(f"model {name} takes no input vectors (its forward has no inputs_embeds), so no memory "
                          f"can be given to it")


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers' own loading bars hidden, then as they were: they would look like the work itself."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load(model: str | None = None, device: str | None = None, dtype: str = "float32", **hub_options: str | None) -> FrozenLM:
    """Load `model`: None (the embedded default), a `.gguf` file, a local directory or a hub id, with
    the hub's `revision`, `token` and `cache_dir` as from_pretrained takes them.

    `dtype` is what the model computes in (bfloat16 halves a big model's memory; `int8` and `nf4`
    hold its weights in 8 or 4 bits through bitsandbytes, nf4 on CUDA only; memories made in it are
    verified in it, and refused by a model loaded in another dtype). `device="auto"` spreads the
    model over every GPU there is (accelerate's `device_map="auto"`).
    """
    if dtype not in MODEL_DTYPES and dtype not in QUANTISED:
        raise MemtokError(f"model dtype must be one of {', '.join([*MODEL_DTYPES, *QUANTISED])}, got {dtype!r}")
    check_device(device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    unknown = sorted(set(hub_options) - {"revision", "token", "cache_dir"})
    if unknown:
        raise MemtokError(f"unknown loading option(s) {', '.join(unknown)}: revision, token and cache_dir are known")
    revision = hub_options.get("revision")
    if (shipped := packaged(model)) is not None:
        path, name, gguf = packaged_model_dir(shipped), shipped.name, None
    elif model.endswith(".gguf"):
        if not os.path.isfile(model):
            raise MemtokError(f"model file not found: {model}")
        path, name, gguf = os.path.dirname(os.path.abspath(model)), os.path.basename(model), os.path.basename(model)
    else:
        path, name, gguf = model, model, None
        hub = None if os.path.isdir(model) else HUB_ID.fullmatch(model)
        if not os.path.isdir(model) and hub is None:
            raise MemtokError(f"model directory not found: {model}")
        if hub is not None and hub["revision"]:
            path, revision = hub["id"], hub["revision"]
    kwargs = {"gguf_file": gguf} if gguf else {"revision": revision} if revision else {}
    kwargs.update({k: v for k, v in hub_options.items() if k != "revision" and v is not None})
    placement = placement_of(device, dtype)
    if dtype in QUANTISED:
        weights = quantisation(dtype, device or default_device())
    else:
        weights = {"dtype": TORCH_DTYPES[dtype]}
    try:
        with _quiet_loading():
            tok = AutoTokenizer.from_pretrained(path, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(path, **weights, **kwargs, **placement)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if os.path.exists(path):
            raise MemtokError(f"could not load model {model!r}: {first}") from exc
        from huggingface_hub.constants import HF_HUB_CACHE, HF_HUB_OFFLINE

        why = "the hub is switched off (HF_HUB_OFFLINE)" if HF_HUB_OFFLINE else "the hub could not provide it"
        raise MemtokError(f"model {model!r} is neither a local folder nor in the Hugging Face cache ({HF_HUB_CACHE}), "
                          f"and {why}: {first}") from exc
    if not placement:
        lm.to(device or default_device())
    return frozen(lm, tok, name, functools.partial(describe, model, path, gguf, revision, hub_options.get("cache_dir")))


def frozen(lm: torch.nn.Module, tok: object, name: str, source: Callable[[], str] | None = None) -> FrozenLM:
    """A loaded model and its tokenizer made memtok's: checked to take input vectors, frozen, in the
    numerics memories are verified in, fingerprinted (`source`: what finds it again, if anything)."""
    check_takes_vectors(lm, name)
    lm.requires_grad_(False)
    lm.eval()
    fix_numerics()
    made = FrozenLM(lm, tok, name, source)
    made.fingerprint  # noqa: B018 - taken before any pass: a quantised layer may repack its weights at its first
    return made
