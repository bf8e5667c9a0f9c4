"""The package's shape: a core that can be read alone, and functions that each fit on a screen."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "memtok"
BUILT_ON_THE_CORE = ("runs", "store", "cli", "training", "analysis")  # subpackages; everything else in memtok/ is the core
MAX_FUNCTION_LINES = 60


def imported_modules(path: Path) -> set[str]:
    """Every memtok module `path` imports, as a dotted name, lazy imports inside functions included."""
    package = ["memtok", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} if node.module else {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n == "memtok" or n.startswith("memtok.")}


def test_imported_modules_resolves_relative_imports():
    """The check below is only as good as this parser: it must see `..runs` from a subpackage."""
    sample = PACKAGE / "store" / "corpus.py"
    assert "memtok.runs.folder" in imported_modules(sample) and "memtok.codec" in imported_modules(sample)


CORE = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__main__.py")  # `python -m memtok` runs the CLI


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_nothing_built_on_it(path):
    banned = {n for n in imported_modules(path) if n.split(".")[1:2] and n.split(".")[1] in BUILT_ON_THE_CORE}
    assert not banned, f"{path.name} (core) imports {sorted(banned)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_screen(path):
    tree = ast.parse(path.read_text())
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(PACKAGE)}: {', '.join(long)}"
