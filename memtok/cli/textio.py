"""Reading texts byte for byte and writing outputs atomically, with one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import MemtokError
from ..files import atomic_write


def read_text(path: str | None) -> str:
    """The UTF-8 text of `path` ("-" or None: standard input), unchanged: no stripping, no newline fixes."""
    try:
        raw = sys.stdin.buffer.read() if path in (None, "-") else Path(path).read_bytes()
    except FileNotFoundError:
        raise MemtokError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise MemtokError(f"is a directory, not a text file: {path}") from None
    except OSError as exc:
        raise MemtokError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "standard input" if path in (None, "-") else path
        raise MemtokError(f"{where} is not valid UTF-8 (byte {exc.start})") from None


def write_text(text: str, path: str | None) -> None:
    """Exactly the text's UTF-8 bytes, to standard output or atomically to `path`."""
    data = text.encode("utf-8")
    if path in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
