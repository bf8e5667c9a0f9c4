"""The package's shape: a core that can be read alone, in rooms that show what it is made of, and
functions that each fit on a screen."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "memtok"
# Each layer may import the layers before it, never one after: core <- store <- runs <- analysis <- cli.
LAYERS = ("core", "store", "runs", "analysis", "cli")
# training (a learned start) stands on the core alone, and only the commands use it
BESIDE = {"training": ("core",)}
# The core's rooms, each on the ones before it: the model, the memory file, decoding, what an encode
# is asked, where a memory starts, encoding. Beneath them the core's own modules (errors, files,
# limits, version, testing), which import no room; above them the codec, which joins them.
ROOMS = ("model", "format", "decode", "settings", "start", "encode")
ABOVE_ROOMS = {"memtok", "memtok.codec"}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 300  # a module one reads in one sitting
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")  # `python -m memtok` runs the CLI


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


def layer(module: str) -> str:
    """The layer of a dotted memtok module name: its subpackage, or the core (its rooms included)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() and parts[1] not in ROOMS else "core"


def room(module: str) -> int:
    """Where a core module stands: beneath the rooms (-1), in one (its place in `ROOMS`), or above them."""
    parts = module.split(".")
    if module in ABOVE_ROOMS:
        return len(ROOMS)
    return ROOMS.index(parts[1]) if len(parts) > 1 and parts[1] in ROOMS else -1


def dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(["memtok", *(rel.parts[:-1] if rel.name == "__init__" else rel.parts)])


def allowed(source: str) -> tuple[str, ...]:
    """The layers a module of layer `source` may import."""
    if source in BESIDE:
        return (*BESIDE[source], source)
    return LAYERS[: LAYERS.index(source) + 1] + (tuple(BESIDE) if source == "cli" else ())


def test_imported_modules_resolves_relative_imports():
    """The checks below are only as good as this parser: it must see `..store` from a subpackage and
    a lazy import inside a function."""
    sample = PACKAGE / "runs" / "encode_corpus.py"
    assert {"memtok.store.writer", "memtok.codec", "memtok.runs.folder"} <= imported_modules(sample)
    assert room("memtok.encode.plan") == ROOMS.index("encode") and room("memtok.errors") == -1
    assert "memtok.runs.evaluate" in imported_modules(PACKAGE / "cli" / "run_commands.py")  # imported lazily
    assert layer("memtok.store.writer") == "store" and layer("memtok.codec") == "core" and layer("memtok") == "core"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_layer_imports_only_the_layers_before_it(path):
    source = layer(dotted(path))
    banned = sorted(n for n in imported_modules(path) if layer(n) not in allowed(source))
    assert not banned, f"{path.relative_to(PACKAGE)} ({source}) imports {banned}"


@pytest.mark.parametrize("path", [p for p in MODULES if layer(dotted(p)) == "core"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_room_of_the_core_imports_only_the_rooms_before_it(path):
    here = room(dotted(path))
    banned = sorted(n for n in imported_modules(path) if layer(n) == "core" and room(n) > here)
    assert not banned, f"{path.relative_to(PACKAGE)} ({ROOMS[here] if 0 <= here < len(ROOMS) else 'core'}) imports {banned}"


def test_the_core_is_in_rooms():
    """What the core is made of shows in its folders: at the top, only the codec and what every room needs."""
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "codec", "errors", "files", "limits", "testing", "version"]
    assert all((PACKAGE / r / "__init__.py").exists() for r in ROOMS)


def test_no_modules_import_each_other_even_lazily():
    """No cycle of any length between memtok's modules: each can be read, and tested, with only
    what it imports."""
    graph = {dotted(p): {n for n in imported_modules(p) if n != dotted(p)} for p in MODULES}
    graph = {m: {n for n in deps if n in graph} for m, deps in graph.items()}
    done, path = set(), []

    def visit(m: str) -> None:
        if m in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(m):] + [m])}")
        if m in done:
            return
        path.append(m)
        for n in sorted(graph[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_screen(path):
    tree = ast.parse(path.read_text())
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(PACKAGE)}: {', '.join(long)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_a_sitting(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)}: {lines} lines; split it by job"
