"""memtok: turn a text into memory tokens of a frozen causal LM, and back, exactly."""

__version__ = "0.1.0"

from .codec import MemoryCodec
from .errors import MemtokError, ModelMismatchError, NotAMemoryError
from .memory import Memory
from .recipes import RECIPES, Recipe

__all__ = ["RECIPES", "Memory", "MemoryCodec", "MemtokError", "ModelMismatchError", "NotAMemoryError", "Recipe",
           "__version__"]
