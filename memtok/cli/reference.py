"""docs/cli.md, written from the commands' own parsers, so that the reference cannot drift from them.

    python -m memtok.cli.reference > docs/cli.md

`tests/test_docs.py` fails when the file differs from what this prints.
"""

from __future__ import annotations

import inspect

import click

from . import cli

HEADER = """# Command reference

Every `memtok` command and option, written from the parsers themselves
(`python -m memtok.cli.reference > docs/cli.md`; a test fails when this page drifts from them).
`memtok COMMAND --help` says the same at a terminal.
"""


def _kind(param: click.Parameter) -> str:
    """What an option takes, in a word or a list of choices."""
    if getattr(param, "is_flag", False):
        return "flag"
    if isinstance(param.type, click.Choice):
        return " | ".join(param.type.choices)
    return param.type.name.upper()


def _default(param: click.Parameter) -> str:
    if param.required:
        return "required"
    if getattr(param, "is_flag", False) or param.default in (None, (), [], getattr(click.core, "UNSET", None)):
        return ""
    return f"`{param.default}`"


def _cell(text: str) -> str:
    """One table cell: one line, its bars and angle brackets escaped for Markdown."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _help(command: click.Command) -> str:
    """A command's help, its `\\b` paragraphs (kept as written by click) as code blocks."""
    paragraphs = inspect.cleandoc(command.help or "").split("\n\n")
    return "\n\n".join(f"```\n{p[2:]}\n```" if p.startswith("\b\n") else p for p in paragraphs)


SHARED_BY = 3  # an option that this many commands take alike is listed once, in its own table


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _row(p: click.Option) -> str:
    names = ", ".join(f"`{n}`" for n in [*p.opts, *p.secondary_opts])
    return f"| {names} | {_cell(_kind(p))} | {_default(p)} | {_cell(p.help or '')} |"


def _table(options: list[click.Option]) -> list[str]:
    return ["| option | takes | default | what it does |", "|---|---|---|---|", *map(_row, options), ""]


def command_section(name: str, command: click.Command, shared: set[str]) -> str:
    """One command: its usage line, its help, a table of its own options, and whether it takes the
    shared ones (`shared`: their rows)."""
    ctx = click.Context(command, info_name=f"memtok {name}")
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `memtok {name}`", "", f"`memtok {name} {usage}`", "", _help(command), ""]
    own = [p for p in _options(command) if _row(p) not in shared]
    lines += _table(own) if own else []
    if len(own) < len(_options(command)):
        lines += ["It also takes the shared options (below).", ""]
    return "\n".join(lines)


def reference() -> str:
    """The whole page: every command of the `memtok` group in name order, then the options that
    several commands take alike."""
    rows: dict[str, list[click.Option]] = {}
    for name in sorted(cli.commands):
        for p in _options(cli.commands[name]):
            rows.setdefault(_row(p), []).append(p)
    shared = {row for row, ps in rows.items() if len(ps) >= SHARED_BY}
    sections = [command_section(name, cli.commands[name], shared) for name in sorted(cli.commands)]
    common = [ps[0] for row, ps in rows.items() if row in shared]
    tail = ["## Shared options", "", f"Options that {SHARED_BY} or more commands take alike.", "", *_table(common)]
    return "\n".join([HEADER, *sections, *tail])


if __name__ == "__main__":
    print(reference(), end="")
