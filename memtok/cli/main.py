"""The `memtok` command group and its one error boundary.

Bad input exits 2 with one line on standard error; other failures exit 1 the same way.
MEMTOK_DEBUG=1 shows the traceback instead. SIGTERM (what `kill` and batch schedulers send) stops a
command as Ctrl-C does, so a run folder writes the report of what it finished.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import warnings

import click

from ..errors import MemtokError
from ..version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             invoke_without_command=True)
@click.version_option(__version__, prog_name="memtok")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Turn texts into memory tokens of a frozen language model, and back, exactly."""
    if ctx.invoked_subcommand is None:  # `memtok` alone: what it can do, not an error
        click.echo(ctx.get_help())


def _quiet_libraries() -> None:
    """transformers' and the hub's load-time bars, notices and retry warnings would bury memtok's own lines."""
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def load_codec(model: str | None, device: str | None):
    """The model, loaded only once the command's own input has been checked."""
    from ..codec import MemoryCodec

    _quiet_libraries()
    ctx = click.get_current_context(silent=True)
    return MemoryCodec.from_pretrained(model, device, ctx.meta.get("model_dtype", "float32") if ctx else "float32")


def memory_model(model: str | None, name: str | None, source: str | None, near: str) -> str | None:
    """The model to decode with: `--model` when given, else the one the memory (or store) records,
    found again from its source (`memtok.model.identity.find_model`), looking beside `near` first."""
    if model is not None or name is None:
        return model
    from pathlib import Path

    from ..model.identity import find_model

    where = Path(near)
    return find_model(name, source, [where if where.is_dir() else where.parent])


def command_line() -> str:
    """How this run was started, to write beside its results."""
    argv = (click.get_current_context().find_root().obj or {}).get("argv", sys.argv[1:])
    return shlex.join(["memtok", *argv])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Notes(logging.Handler):
    """memtok's own notes (texts taken up from a checkpoint, a model converted once) as lines on
    standard error, looked up at each line as click does."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"memtok: {record.getMessage()}", err=True)


def _say_notes() -> None:
    notes = logging.getLogger("memtok")
    if not any(isinstance(h, _Notes) for h in notes.handlers):
        notes.addHandler(_Notes())
    notes.setLevel(logging.INFO)
    notes.propagate = False


def main(args: list[str] | None = None) -> None:
    """Entry point: one line on standard error for any failure, exit 2 for bad input."""
    debug = os.environ.get("MEMTOK_DEBUG") == "1"
    signal.signal(signal.SIGTERM, _interrupt)
    _say_notes()
    try:
        argv = sys.argv[1:] if args is None else list(args)
        cli.main(args=argv, prog_name="memtok", standalone_mode=False, obj={"argv": argv})
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"memtok: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("memtok: interrupted", err=True)
        sys.exit(130)
    except MemtokError as exc:
        if debug:
            raise
        from .options import in_flags  # the library's words for a setting, as this command line spells it

        click.echo(f"memtok: error: {in_flags(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # the one place that turns any failure into one line
        if debug:
            raise
        click.echo(f"memtok: error: {type(exc).__name__}: {exc} (MEMTOK_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
