"""Errors memtok raises on purpose.

`MemtokError` marks bad input (a usage problem the user can fix); the command line turns it into
a one-line message and exit code 2. `DecodeMismatchError` is the one refusal that is not bad
input: a memory that loaded fine but did not decode to its text (exit 1). Anything else is a bug
or an environment failure (exit 1).
"""


class MemtokError(Exception):
    """Bad input: an empty text, a wrong file, a memory of another model, an option out of range."""

    exit_code = 2


class ModelMismatchError(MemtokError):
    """A memory was made with a different model than the one asked to decode it."""


class NotAMemoryError(MemtokError):
    """A file that is not a memtok memory (or store), or one whose header or tensors do not hold up."""


class DecodeMismatchError(MemtokError):
    """Greedy decoding gave a text whose sha256 is not the one the memory recorded."""

    exit_code = 1

    def __init__(self, message: str, text: str, texts: list[str] | None = None,
                 mismatched: list[int] | None = None) -> None:
        super().__init__(message)
        self.text = text  # what decoding gave (the first that did not match), for inspection
        self.texts = texts if texts is not None else [text]  # every text decoded, matched or not
        self.mismatched = mismatched if mismatched is not None else [0]  # their indices that did not match


class DoesNotFitError(MemtokError):
    """One text, alone, runs out of the device's memory: what would make it fit, in the settings' words."""

    def __init__(self, tokens: int, k: int, device: object) -> None:
        super().__init__(f"one text of {tokens} tokens with {k} vector(s) does not fit in the memory of {device}: "
                         "lower max_batch_tokens or segment_tokens, recompute layers (recompute_layers), or load "
                         "the model in fewer bits")
