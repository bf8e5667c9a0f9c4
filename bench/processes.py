"""One process with all the threads against one single-threaded process per core, side by side:
what `torchrun` buys `memtok encode-corpus` on one machine.

    python bench/processes.py --limit 32 --processes 2

Each side encodes the same first rows into its own fresh store, one after the other; the texts
per hour come from each run's own `--json` summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def encode_corpus(data: str, limit: int, store: Path, processes: int, threads: int, batch_size: int,
                  max_steps: int | None, model: str | None) -> dict:
    args = ["encode-corpus", data, "--out", str(store), "--limit", str(limit), "--batch-size", str(batch_size),
            "--json"] + (["--max-steps", str(max_steps)] if max_steps else []) + (["--model", model] if model else [])
    if processes == 1:
        cmd = [sys.executable, "-m", "memtok", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "memtok", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/paper/raschka_chunks_100.csv")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--processes", type=int, default=2, help="processes of the second run, one thread each")
    ap.add_argument("--batch-size", type=int, default=8, help="per process")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--model", default=None, help="a hub id, model folder or .gguf (default: the embedded model)")
    args = ap.parse_args()
    print("| processes x threads | batch per process | exact | wall (s) | texts/hour | ratio |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for run, (processes, threads) in enumerate(((1, args.processes), (args.processes, 1))):
            s = encode_corpus(args.data, args.limit, Path(tmp) / f"run{run}", processes, threads,
                              args.batch_size, args.max_steps, args.model)
            base = base or s["texts_per_hour"]
            print(f"| {processes} x {threads} | {args.batch_size} | {s['exact']}/{s['total']} | {s['wall_seconds']} | "
                  f"{s['texts_per_hour']} | {s['texts_per_hour'] / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
