"""Fixtures: a tiny randomly initialised Llama-style model (`helpers.build_tiny_model_dir`), saved as a
model directory. Tests run on it in seconds; a handful marked `slow` use the real embedded SmolLM2-135M.
"""

from __future__ import annotations

import os
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

from helpers import DEVICE, LINES, build_tiny_model_dir  # noqa: E402 - after the settings above


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
