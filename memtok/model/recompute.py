"""Activation checkpointing for the optimisation's passes, opt-in (`EncodeConfig.recompute_layers`).

The backward pass to the memory vectors needs every layer's activations for every position of the
batch: on a big model and long texts that, not the weights, fills a GPU. Recomputing each decoder
layer's activations in the backward pass instead of keeping them trades one more forward pass per
step for holding one layer's at a time. Done here, around each layer's own forward, rather than
with transformers' switch, which acts only on a model in training mode (where some families'
dropout would change the arithmetic) and is spelt differently across its versions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.utils.checkpoint

from ..errors import MemtokError
from .model import FrozenLM


def decoder_layers(lm: FrozenLM) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the module list inside its decoder with one entry per layer."""
    n = lm.layers
    decoder = lm.model.get_decoder() or lm.model
    for module in decoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise MemtokError(f"model {lm.name} has no stack of {n} decoder layers to recompute; leave out recompute_layers=True")


def _recomputed(forward: Callable, *args, **kwargs):
    if not torch.is_grad_enabled():  # decoding and scoring keep nothing for a backward pass
        return forward(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


@contextmanager
def layers_recomputed(lm: FrozenLM, on: bool) -> Iterator[None]:
    """Within it, each decoder layer of `lm` keeps no activations for the backward pass (when `on`)."""
    if not on:
        yield
        return
    layers = list(decoder_layers(lm))
    # an instance may have a forward of its own: accelerate's, which moves a layer's inputs to its
    # GPU on a model spread over several; it is put back as it was, not deleted
    own = [layer.__dict__.get("forward") for layer in layers]
    for layer in layers:
        layer.forward = functools.partial(_recomputed, layer.forward)
    try:
        yield
    finally:
        for layer, forward in zip(layers, own):
            if forward is None:
                del layer.forward  # the class's own forward again
            else:
                layer.forward = forward
