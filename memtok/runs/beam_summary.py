"""Greedy against beam search, summed up over a run: per width, which memories still give their text."""

from __future__ import annotations

import statistics


def beam_summary(results: list[dict]) -> list[dict]:
    """Per beam width: of the memories decoded by it, how many gave the text back, among those
    greedy gave back, and where the others left it (median first differing place: a character of
    an eval's text, a token of a capacity run's targets)."""
    rows = []
    widths = sorted({int(n) for r in results for n in r.get("beams", {})})
    for n in widths:
        tried = [r for r in results if str(n) in r.get("beams", {})]
        greedy_exact = [r for r in tried if r["exact"]]
        left = [r["beams"][str(n)] for r in tried if r["beams"][str(n)] is not None]
        rows.append({"beams": n, "decoded": len(tried), "exact": sum(r["beams"][str(n)] is None for r in tried),
                     "greedy_exact": len(greedy_exact),
                     "exact_of_greedy_exact": sum(r["beams"][str(n)] is None for r in greedy_exact),
                     "median_departure": statistics.median(left) if left else None})
    return rows


def beam_table(rows: list[dict], unit: str) -> list[str]:
    """The report's lines for `beam_summary` rows; none when no memory was decoded by beam search."""
    if not rows:
        return []
    lines = ["", "Beam search from the same memories (made and verified for greedy decoding):", "",
             f"| beams | memories | exact | exact, of the greedy-exact | where the others leave it (median {unit}) |",
             "|---|---|---|---|---|"]
    return lines + [f"| {b['beams']} | {b['decoded']} | {b['exact']} | {b['exact_of_greedy_exact']}/{b['greedy_exact']} | "
                    f"{'-' if b['median_departure'] is None else b['median_departure']} |" for b in rows]
