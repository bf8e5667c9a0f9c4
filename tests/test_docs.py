"""The README and docs/cli.md say what the code is: the size a newcomer reads, the package map, the
option reference."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "memtok"
README = (ROOT / "README.md").read_text()


def test_the_readme_reads_in_five_minutes():
    assert len(README.encode()) <= 8 * 1024


def test_the_docs_stay_at_most_70_kb():
    """docs/*.md, the written pages and the generated command reference together: reference
    material a reader can take in, today's figures only."""
    sizes = {p.name: len(p.read_bytes()) for p in (ROOT / "docs").glob("*.md")}
    assert sum(sizes.values()) <= 70_000, sorted(sizes.items(), key=lambda kv: -kv[1])


def test_the_readme_names_the_test_command_ci_runs():
    assert "make test" in README and "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_package_map_names_every_module_and_nothing_else():
    section = README.split("## Package map", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_]+\.py)`", section))
    core = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py"}  # the rooms are folders
    assert named == core, f"missing {sorted(core - named)}, gone {sorted(named - core)}"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(re.findall(r"`([a-z_]+)/`", section))


def test_the_command_reference_is_what_the_parsers_say():
    from memtok.cli.reference import reference

    assert (ROOT / "docs" / "cli.md").read_text() == reference(), \
        "docs/cli.md drifted: python -m memtok.cli.reference > docs/cli.md"


def test_every_command_is_in_the_readme_table():
    from memtok.cli import cli

    table = {m for m in re.findall(r"^\| `([a-z-]+)` \|", README, flags=re.M)}
    assert table == set(cli.commands)
