"""Where a learned start's training text comes from: named sources this machine has without a network.

Each source is a package's own text (its version read from the package manager) turned into plain
documents: CPython's help topics, chatterbot-corpus's dialogues, the Linux manual pages in English
(Debian's `manpages` and `manpages-dev`) and Spanish (`manpages-es`), the Python documentation's reStructuredText
(`python3.11-doc`) and the Debian Reference in Spanish (`debian-reference-es`). `make train-text`
installs the Debian ones, `memtok[train]` chatterbot-corpus.

Never text the start is measured on: the paper's three files, STS-B, fortune packages, word lists
and CPython's test data are kept aside for checks on text no one here tuned on.
"""

from __future__ import annotations

import gzip
import html.parser
import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


def debian_version(package: str) -> str | None:
    """An installed Debian package's version, or None."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", package], capture_output=True,
                             text=True, check=False).stdout
    except OSError:  # not a Debian machine
        return None
    return out.split()[-1] if out.startswith("install ok installed") else None


def debian_files(package: str, pattern: str) -> list[Path]:
    """An installed Debian package's own files whose path matches `pattern`, sorted."""
    try:
        listed = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted(Path(p) for p in listed.splitlines() if re.search(pattern, p) and Path(p).is_file())


_ROFF_ESCAPES = {r"\-": "-", r"\(aq": "'", r"\(dq": '"', r"\(em": "—", r"\(en": "–", r"\(bu": "•",
                 r"\e": "\\", r"\&": "", r"\ ": " ", r"\~": " ", r"\(lq": "“", r"\(rq": "”", r"\(co": "©"}
_ROFF_LEFT = re.compile(r"\\f(\[[^]]*\]|\(..|.)|\\[/,|^%:]|\\s[-+]?\d+|\\\*(\(..|\[[^]]*\]|.)|\\\(..|\\\[[^]]*\]")
_ROFF_TEXT_MACROS = {"SH", "SS", "B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB", "TP", "IP", "Nm",
                     "Nd", "Ar", "Fl", "Pa", "Sh", "It"}


def roff_text(source: str) -> str:
    """A manual page's text: requests dropped (a font or heading request keeps its words), escapes
    written as the characters they stand for or dropped. Not a typesetter: enough to read as prose."""
    words = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", '.\\"')):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name not in _ROFF_TEXT_MACROS or not rest:
                words.append("\n")  # a paragraph or layout request: a break
                continue
            line = rest.replace('"', "")
        for escape, char in _ROFF_ESCAPES.items():
            line = line.replace(escape, char)
        words.append(_ROFF_LEFT.sub("", line))
    return re.sub(r"\n\s*\n+", "\n\n", " ".join(words).replace(" \n ", "\n")).strip()


class _HtmlText(html.parser.HTMLParser):
    """The text of an HTML page's body, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._skip += tag in ("script", "style", "head")
        if tag in ("p", "div", "li", "pre", "h1", "h2", "h3", "tr", "br"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style", "head") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_text(source: str) -> str:
    parser = _HtmlText()
    parser.feed(source)
    return re.sub(r"[ \t]*\n\s*\n+", "\n\n", re.sub(r"[ \t]+", " ", "".join(parser.parts))).strip()


def _manpages(package: str) -> tuple[str | None, Iterator[str]]:
    files = debian_files(package, r"/man/.*\.gz$")
    return debian_version(package), (roff_text(gzip.open(p, "rt", encoding="utf-8", errors="replace").read())
                                      for p in files)


def _python_docs() -> tuple[str | None, Iterator[str]]:
    files = debian_files("python3.11-doc", r"/_sources/.*\.rst\.txt$")
    return debian_version("python3.11-doc"), (p.read_text(encoding="utf-8", errors="replace") for p in files)


def _debian_reference_es() -> tuple[str | None, Iterator[str]]:
    files = debian_files("debian-reference-es", r"\.es\.html$")
    return debian_version("debian-reference-es"), (html_text(p.read_text(encoding="utf-8", errors="replace"))
                                                   for p in files)


def _pydoc_topics() -> tuple[str | None, Iterator[str]]:
    from pydoc_data.topics import topics

    return f"CPython {sys.version.split()[0]}", (topics[name] for name in sorted(topics))


def chatterbot_files(language: str = "*") -> list[Path]:
    """chatterbot-corpus's YAML files (of one language, a folder name such as 'spanish'); none when
    it is not installed."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "data").glob(f"{language}/*.yml"))


def _dialogue(path: Path) -> str:
    lines = [ln.strip().lstrip("- ").strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.endswith(":") and not ln.startswith("#"))


def _chatterbot() -> tuple[str | None, Iterator[str]]:
    files = chatterbot_files()
    if not files:
        return None, iter(())
    from importlib.metadata import version

    return f"chatterbot-corpus {version('chatterbot-corpus')}", (d for d in map(_dialogue, files) if d)


@dataclass(frozen=True)
class TextSource:
    """A named source of training documents and the language it is mostly in."""

    name: str
    language: str
    what: str
    read: Callable[[], tuple[str | None, Iterator[str]]]  # (version, or None when absent; its documents)


TEXT_SOURCES = {s.name: s for s in (
    TextSource("pydoc-topics", "en", "CPython's help topics (pydoc_data.topics)", _pydoc_topics),
    TextSource("chatterbot", "many", "chatterbot-corpus's dialogues, every language (memtok[train])", _chatterbot),
    TextSource("manpages", "en", "the Linux manual pages (Debian manpages)", lambda: _manpages("manpages")),
    TextSource("manpages-dev", "en", "the Linux manual pages for programmers (Debian manpages-dev)",
               lambda: _manpages("manpages-dev")),
    TextSource("manpages-es", "es", "their Spanish translations (Debian manpages-es)",
               lambda: _manpages("manpages-es")),
    TextSource("python-docs", "en", "the Python documentation's sources (Debian python3.11-doc)", _python_docs),
    TextSource("debian-reference-es", "es", "the Debian Reference in Spanish (Debian debian-reference-es)",
               _debian_reference_es),
)}
