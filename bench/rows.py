"""What every side-by-side bench does with its rows: a markdown table on standard output, and the
raw rows with the arguments that made them in a JSON file when asked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def report(rows: list[dict], columns: dict[str, Callable[[dict], object]], args: argparse.Namespace) -> None:
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(cell(r)) for cell in columns.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
