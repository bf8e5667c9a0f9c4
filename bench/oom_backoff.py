"""Running out of GPU memory for real: a batch that does not fit halves and every text still ends.

Random weights in SmolLM2-135M's shape on CUDA, eight texts of about 190 tokens, one vector each,
at most 60 steps, each text ending when 12 steps bring no better accuracy and starting again after
8 (`RECIPE`): random weights never make a text exact, so patience ends each at a step of its own
trajectory, and a restart falls inside the cap. First with the whole GPU (its peak memory measured),
then with the process held by `torch.cuda.set_per_process_memory_fraction` to its weights and 40 %
of what the first run's batch needed beyond them: the batch must run out of memory, back off
(memtok's warning), and still end every text at the very step it ended at first, with as many
restarts, which no accounting slip would leave alone. Exit 1 otherwise. Part of `make gpu-check`.

    python bench/oom_backoff.py --json gpu-check/oom-backoff.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch
from common import random_lm, write_json

from memtok import MemoryCodec
from memtok.testing import TEXTS


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


RECIPE = "memtok:patience=12:restart_after=8"


def encode(codec: MemoryCodec, texts: list[str]) -> list[tuple[int, int]]:
    """Each text's (steps, restarts)."""
    mems = codec.encode(texts, k=1, batch_size=len(texts), max_steps=60, max_batch_tokens=4096, recipe=RECIPE,
                        show_progress_bar=False)
    return [(m.steps, sum(s.get("restarts", 0) for s in m.segments)) for m in mems]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA here: a real out-of-memory needs a GPU")
        return 1
    codec = MemoryCodec(random_lm("smollm2-135m", "cuda"))
    texts = [" ".join(TEXTS[i:] + TEXTS[:i]) * 2 for i in range(8)]
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    whole = encode(codec, texts)
    peak = torch.cuda.max_memory_allocated()
    allowed = weights + 0.4 * (peak - weights)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(allowed / total)
    warned = Warnings()
    logging.getLogger("memtok").addHandler(warned)
    held = encode(codec, texts)
    backed_off = [line for line in warned.lines if line.startswith("out of memory")]
    row = {"weights_mb": round(weights / 2**20), "peak_mb": round(peak / 2**20), "allowed_mb": round(allowed / 2**20),
           "steps_whole": whole, "steps_held": held, "warnings": backed_off}
    print(json.dumps(row, indent=1))
    if args.json:
        write_json(args.json, row)
    return 0 if backed_off and held == whole else 1


if __name__ == "__main__":
    sys.exit(main())
