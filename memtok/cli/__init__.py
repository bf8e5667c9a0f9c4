"""The `memtok` command line: `encode`, `decode`, `info` on single memories; `eval`, `capacity` and
`encode-corpus` on datasets; `train-start` for a learned start."""

from . import memory_commands, run_commands, start_commands  # noqa: F401 - registers the commands on `cli`
from .main import cli, main

__all__ = ["cli", "main"]
