"""Fixtures: a tiny randomly initialised Llama-style model, built here, saved as a model directory.

Tests run on it in seconds; a handful marked `slow` use the real embedded SmolLM2-135M.
"""

from __future__ import annotations

import os
import random
import tempfile

import pytest
import torch

# The tiny model's matrices are too small to gain from threads (the fast tier takes about twice as
# long with two): one thread in this process. The real model's slow tests run `memtok` in
# subprocesses, which keep torch's default, except under pytest-xdist: there each worker has a
# core of its own, and a subprocess taking both would slow the other worker's tests as much as it
# gains (`OMP_NUM_THREADS=2 pytest -q -n 2`: 518 s so, 267 s with one thread each).
torch.set_num_threads(1)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# The suite sees only the starts that ship with memtok (a test that wants another sets MEMTOK_STARTS
# itself), and keeps its model cache apart from the user's (the embedded model's fp32 folder is
# built there once and shared by the test runs of this machine).
os.environ.pop("MEMTOK_STARTS", None)
os.environ["MEMTOK_CACHE"] = os.path.join(tempfile.gettempdir(), "memtok-test-cache")

# What the tiny model is briefly trained on. An untrained random model cannot carry a text from one
# position to the next, so no memory vector could make it reproduce anything; a few seconds of
# training make it a small language model of these sentences, which memories then select and steer.
TEXTS = [
    "the cat sat on the mat.",
    "the cat ran to the park.",
    "a dog ran in the park.",
    "El perro corre en el parque.",
    "memory tokens turn text into vectors.",
    "vectors turn back into text again.",
    "Die Katze schläft auf dem Sofa.",
    "numbers: 3 + 4 = 7, 10 - 2 = 8.",
]

LINES = [TEXTS[0], TEXTS[4], TEXTS[5]]

# Where the tiny models run: `MEMTOK_TEST_DEVICE=cuda pytest -m "not slow"` runs the fast tier on a
# GPU (the CLI's own default is CUDA when present, so its tests follow without the variable).
DEVICE = os.environ.get("MEMTOK_TEST_DEVICE", "cpu")


def build_tokenizer(texts: list[str] = TEXTS):
    """A byte-level BPE of 320 tokens trained on `texts`, with BOS <s> and EOS </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<|endoftext|>")


def build_tiny_model_dir(path: str, texts: list[str] = TEXTS, context: int = 64) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = build_tokenizer(texts)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    _fit(model, hf_tok, texts)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def _fit(model, tok, texts: list[str], steps: int = 150, shifts: tuple[int, ...] = (0,)) -> None:
    """A few hundred milliseconds of next-token training on `texts`, each between BOS and EOS, and
    with `shifts` random tokens after the BOS: a model with learned absolute positions (GPT-2, OPT)
    trained with the text always at position 1 has never seen it one place later, where it sits
    behind a memory vector."""
    rng = random.Random(0)
    rows = [[tok.bos_token_id] + [rng.randrange(3, len(tok)) for _ in range(shift)]
            + tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts for shift in shifts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.eos_token_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> str:
    return build_tiny_model_dir(str(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def tiny_codec(tiny_dir):
    from memtok import MemoryCodec

    return MemoryCodec.from_pretrained(tiny_dir, device=DEVICE)


@pytest.fixture(scope="session")
def lines_codec(tmp_path_factory):
    """A tiny model that knows LINES with and without a newline, with a context of 16 positions:
    the lines joined are too long for it, so they must be cut into segments."""
    from memtok import MemoryCodec

    path = build_tiny_model_dir(str(tmp_path_factory.mktemp("tiny-lines")), LINES + [t + "\n" for t in LINES],
                                context=16)
    return MemoryCodec.from_pretrained(path, device=DEVICE)


@pytest.fixture(scope="session")
def other_tiny_dir(tmp_path_factory) -> str:
    """Same architecture and tokenizer, other weights: a model a memory must not be decoded with."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_model_dir(str(tmp_path_factory.mktemp("tiny-llama-other")))
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.save_pretrained(path)
    return path
