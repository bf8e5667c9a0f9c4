"""memtok: turn a text into memory tokens of a frozen causal LM, and back, exactly.

The names below load on first use (PEP 562), so that `memtok --help` and `memtok info` do not wait
for torch and transformers to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .version import __version__

_HOMES = {"MemoryCodec": ".codec", "DecodeMismatchError": ".errors", "MemtokError": ".errors",
          "ModelMismatchError": ".errors", "NotAMemoryError": ".errors", "Memory": ".format.memory",
          "EncodeConfig": ".settings.config", "RECIPES": ".settings.recipes", "Recipe": ".settings.recipes"}

if TYPE_CHECKING:
    from .codec import MemoryCodec
    from .errors import DecodeMismatchError, MemtokError, ModelMismatchError, NotAMemoryError
    from .format.memory import Memory
    from .settings.config import EncodeConfig
    from .settings.recipes import RECIPES, Recipe


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'memtok' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = ["RECIPES", "DecodeMismatchError", "EncodeConfig", "Memory", "MemoryCodec", "MemtokError",
           "ModelMismatchError", "NotAMemoryError", "Recipe", "__version__"]
