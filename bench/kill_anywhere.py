"""Kill anywhere: a two-process `encode-corpus` killed outright at random moments, resumed after each.

Each attempt starts `torchrun --nproc-per-node 2 -m memtok encode-corpus` on the same store and,
after a random delay drawn from the length of an uninterrupted run, SIGKILLs the launcher and its
workers at once (as a power cut would) or, every other time, the launcher alone (its workers must
stop by themselves, or the next attempt finds the store locked and fails), so kills land in start-up, in
optimisation, in writing parts, in packing shards and in writing the index. After the last kill
the run is finished, and the store must hold every row exactly once, each exact memory decoding
to its row's text, and nothing left over (parts, in-flight files, temporaries). An attempt that
finishes before its kill has its store checked the same way and removed, so that every kill has
work to land in; it goes on until `--kills` kills have landed mid-run.

Runs on the tiny model the test suite builds (memtok.testing), so the kills, not the model, are
what takes the time; `--model` takes any other.

    python bench/kill_anywhere.py --kills 20 --json docs/results/bench/kill-anywhere.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_json

from memtok import MemoryCodec
from memtok.store import MemoryStore
from memtok.testing import TEXTS, build_tiny_model_dir

HARD = "zebra quantum fjord"  # a row the tiny model cannot make exact: a long optimisation to land in


def command(data: Path, store: Path, model: str, processes: int) -> list[str]:
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes > 1 else []
    return [sys.executable, *launch, "-m", "memtok", "encode-corpus", str(data), "--out", str(store), "--model", model,
            "-k", "1", "--max-steps", "300", "--batch-size", "2", "--shard-size", "4", "--json", "--device", "cpu"]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc): torchrun's workers call setsid and so leave
    the launcher's process group, out of reach of a signal sent to it."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def attempt(cmd: list[str], kill_after: float | None, everything: bool = True) -> tuple[str, float]:
    """('killed' | 'finished' | 'failed: ...', seconds) of one run, SIGKILLed after `kill_after`: the
    launcher and its workers at once (a power cut), or the launcher alone; then the seconds its
    workers took to be gone (they must stop by themselves, or the store stays locked)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    began = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = p.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        workers = descendants(p.pid)
        killed = time.monotonic()
        for pid in [p.pid, *(workers if everything else [])]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.communicate()  # its workers hold its pipes: this returns when they are gone too
        while any(map(alive, workers)) and time.monotonic() - killed < 120:
            time.sleep(0.1)
        return "killed", time.monotonic() - killed
    seconds = time.monotonic() - began
    return ("finished", seconds) if p.returncode == 0 else (f"failed: {err.decode()[-300:]}", seconds)


def check(store_dir: Path, rows: list[str], codec: MemoryCodec) -> dict:
    store = MemoryStore(store_dir)
    ids = sorted(int(i) for i in store)
    decoded = [store.decode(codec, i) == rows[int(i)] for i in store if store.record(i)["exact"]]
    leftovers = [str(p.relative_to(store_dir)) for p in store_dir.rglob("*")
                 if p.is_file() and (p.suffix == ".tmp" or "parts" in p.parts or p.name.startswith("in-flight"))]
    return {"rows": len(rows), "in index": len(ids), "each once": ids == list(range(len(rows))),
            "exact": len(decoded), "exact decode to their text": sum(decoded), "leftover files": leftovers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--processes", type=int, default=2, help="under torchrun; 1: one process, no launcher (quick)")
    ap.add_argument("--model", default=None, help="default: the suite's tiny model, built here")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="kill-anywhere-"))
    model = args.model or build_tiny_model_dir(str(work / "tiny"))
    rows = [(TEXTS + [HARD])[i % (len(TEXTS) + 1)] for i in range(args.rows)]
    data = work / "rows.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([["chunk"], *([r] for r in rows)])
    outcome, whole = attempt(command(data, work / "reference", model, args.processes), None)
    assert outcome == "finished", outcome
    print(f"an uninterrupted run: {whole:.1f} s", file=sys.stderr)
    log, checks, store, codec = [], [], work / "store", MemoryCodec.from_pretrained(model, "cpu")
    while sum(e["outcome"] == "killed" for e in log) < args.kills and len(log) < 3 * args.kills:
        everything = len(log) % 2 == 0
        delay = rng.uniform(0.0, whole)
        outcome, gone = attempt(command(data, store, model, args.processes), delay, everything)
        what = "launcher and workers" if everything else "launcher alone"
        log.append({"attempt": len(log) + 1, "after seconds": round(delay, 2), "killed": what, "outcome": outcome,
                    "workers gone after seconds": round(gone, 1) if outcome == "killed" else None})
        print(f"attempt {len(log)} ({what}) after {delay:.1f} s: {outcome}"
              + (f", workers gone {gone:.1f} s later" if outcome == "killed" else ""), file=sys.stderr)
        if outcome.startswith("failed"):
            break
        if outcome == "finished":  # the store is whole: check it, and start a new one for the next kills
            checks.append(check(store, rows, codec))
            shutil.rmtree(store)
    outcome, _ = attempt(command(data, store, model, args.processes), None)
    checks.append(check(store, rows, codec))
    result = {"uninterrupted seconds": round(whole, 1), "kills": log, "final run": outcome, "stores checked": checks,
              "every store whole": all(c["each once"] and c["exact"] == c["exact decode to their text"]
                                       and not c["leftover files"] for c in checks)}
    summary = {k: v for k, v in result.items() if k != "kills"}
    summary["landed mid-run"] = sum(e["outcome"] == "killed" for e in log)
    alone = [e["workers gone after seconds"] for e in log if e["killed"] == "launcher alone" and e["outcome"] == "killed"]
    summary["launcher alone: longest until its workers were gone (s)"] = max(alone, default=None)
    print(json.dumps(summary, indent=2))
    if args.json:
        write_json(args.json, {"args": vars(args), **result, **summary})


if __name__ == "__main__":
    main()
