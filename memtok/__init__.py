"""memtok: turn a text into memory tokens of a frozen causal LM, and back, exactly."""

from .codec import MemoryCodec
from .errors import (
           DecodeMismatchError,
           MemtokError,
           ModelMismatchError,
           NotAMemoryError,
)
from .format.memory import Memory
from .settings.config import EncodeConfig
from .settings.recipes import RECIPES, Recipe
from .version import __version__

__all__ = ["RECIPES", "DecodeMismatchError", "EncodeConfig", "Memory", "MemoryCodec", "MemtokError",
           "ModelMismatchError", "NotAMemoryError", "Recipe", "__version__"]
