"""Peak memory of `memtok encode -f FILE -k 1 --max-steps 2` on texts of 1 KB, 10 KB and 200 KB.

Each size runs in its own process, which reports its own peak resident set size (ru_maxrss), so
one run's peak cannot hide another's. The texts are random words of the model's own vocabulary
(seeded), which no memory can hold: the point is what the optimisation allocates, not exactness.

    python bench/peak_memory.py                     # 1000,10000,200000 bytes
    python bench/peak_memory.py --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def random_words(model: str | None, n_bytes: int, seed: int = 0) -> str:
    """Words of the model's vocabulary in random order, `n_bytes` of UTF-8."""
    from memtok import MemoryCodec

    tok = MemoryCodec.from_pretrained(model, "cpu").lm.tokenizer
    words = sorted({w[1:] for w in tok.get_vocab() if w.startswith("Ġ") and w[1:].isalpha() and w[1:].isascii()})
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n_bytes]


def child(path: str, model: str | None) -> None:
    """Encode `path` as the command line does, then print this process's peak RSS in MiB."""
    from memtok.cli import main

    out = Path(tempfile.mkdtemp()) / "m.safetensors"
    try:
        main(["encode", "-f", path, "-k", "1", "--max-steps", "2", "-o", str(out), *(["--model", model] if model else [])])
    except SystemExit:
        pass
    print(f"PEAK_MIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,200000", help="text sizes in bytes")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help="a hub id, model folder or .gguf (default: the embedded model)")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.model)
    print("| text | peak RSS (MiB) | wall (s) | encode's summary |\n|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(random_words(args.model, size))
        started = time.perf_counter()
        model = ["--model", args.model] if args.model else []
        p = subprocess.run([sys.executable, __file__, "--child", f.name, *model], capture_output=True, text=True,
                           check=False)
        wall = time.perf_counter() - started
        peak = next((line.split()[1] for line in p.stdout.splitlines() if line.startswith("PEAK_MIB")), "?")
        summary = (p.stderr.strip().splitlines() or ["?"])[-1]
        print(f"| {size} bytes | {peak} | {wall:.0f} | {summary} |", flush=True)


if __name__ == "__main__":
    main()
