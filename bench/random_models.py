"""Random-weight models in the shapes of real ones, for a machine that cannot hold the real weights
(a lent GPU takes 64 MiB of files): the numerics of a shape, its memory and its kernels, not quality.

    from random_models import random_lm
    lm = random_lm("llama-3.1-8b", "cuda", "bfloat16")   # built on the GPU, nothing written to disk
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from memtok.model import FrozenLM
from memtok.placement import MODEL_DTYPES, fix_numerics

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import build_tokenizer  # noqa: E402 - the suite's own small BPE: its BOS and EOS are what decoding needs

# The configs of the real models (their config.json), less what changes nothing here.
SHAPES = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
}


def random_lm(shape: str, device: str, dtype: str = "float32", seed: int = 0) -> FrozenLM:
    """A `FrozenLM` of Llama architecture in `shape` (`SHAPES`), random weights made on `device`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    config = LlamaConfig(**SHAPES[shape], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(MODEL_DTYPES[dtype])
    fix_numerics()
    return FrozenLM(model.requires_grad_(False).eval(), tok, f"random {shape}")
