"""Errors memtok raises on purpose.

`MemtokError` marks bad input (a usage problem the user can fix); the command line turns it into
a one-line message and exit code 2. Anything else is a bug or an environment failure (exit 1).
"""


class MemtokError(Exception):
    """Bad input: an empty text, a wrong file, a memory of another model, an option out of range."""


class ModelMismatchError(MemtokError):
    """A memory was made with a different model than the one asked to decode it."""


class NotAMemoryError(MemtokError):
    """A file that is not a memtok memory (or store)."""
