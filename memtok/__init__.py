"""memtok: turn a text into memory tokens of a frozen causal LM, and back, exactly."""

__version__ = "0.1.0"

from .codec import MemoryCodec  # noqa: E402
from .errors import MemtokError, ModelMismatchError, NotAMemoryError  # noqa: E402
from .memory import Memory  # noqa: E402
from .recipes import RECIPES, Recipe  # noqa: E402

__all__ = ["Memory", "MemoryCodec", "MemtokError", "ModelMismatchError", "NotAMemoryError", "RECIPES", "Recipe",
           "__version__"]
