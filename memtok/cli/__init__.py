"""The `memtok` command line: `encode`, `decode`, `info` on single memories; `eval`, `capacity` and
`encode-corpus` on datasets; `train-start` for a learned start;
`detect` for input vectors that are no token's."""

from . import analysis_commands, memory_commands, run_commands, start_commands  # noqa: F401 - registers the commands on `cli`
from .main import cli, main

__all__ = ["cli", "main"]
