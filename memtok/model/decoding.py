"""The model's cached forward pass, token by token: what greedy decoding runs, in the model's own
terms (which keyword its cache goes by, whether it can give the last position's logits alone)."""

from __future__ import annotations

import inspect

import torch

from .model import FrozenLM


def _cache_arg(model: torch.nn.Module) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; speak whichever the model knows."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _last_logits_only(model: torch.nn.Module) -> dict:
    """The prefill's logits for its last position only, where the model can: for the whole context they
    would be [rows, context, vocabulary], gigabytes for long prompts of a big vocabulary."""
    parameters = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in parameters else \
        {"num_logits_to_keep": 1} if "num_logits_to_keep" in parameters else {}


def prefill(lm: FrozenLM, context: torch.Tensor):
    """The model's output for input vectors [B, T, d] with its cache; `.logits[:, -1]` predicts the next token."""
    return lm.model(inputs_embeds=context, use_cache=True, **_last_logits_only(lm.model))


def extend(lm: FrozenLM, ids: torch.Tensor, before):
    """The output for one more token per row (`ids` [B, 1]) after the output `before`, from its cache."""
    arg = _cache_arg(lm.model)
    return lm.model(input_ids=ids, use_cache=True, **{arg: getattr(before, arg)})
