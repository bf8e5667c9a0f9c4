"""Do the memories stored in run folders still decode to their texts with today's code?

A change to how decoding computes (a kernel, a shape, the prefill's logits) can flip a near tie in a
memory verified before it. This decodes every exact memory of the given run folders on the
embedded model, as `memtok decode` does (in batches, each row as alone), and counts those whose
text's sha256 still matches.

    python bench/decode_stored.py docs/results/raschka100-k1-first50 docs/results/raschka100-k1-rows50-100 \\
        docs/results/raschka1000-plan-learned docs/results/chunks-plan-learned docs/results/chunks-plan
"""

from __future__ import annotations

import argparse
import sys

from common import folder_memories, folder_model

from memtok import MemoryCodec
from memtok.format.header import sha256_text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    total = same = 0
    for folder in args.folders:
        codec = MemoryCodec.from_pretrained(folder_model(folder), device="cpu")
        mems = list(folder_memories(folder, exact_only=True).values())
        texts = codec.decode(mems, check=False)
        ok = sum(sha256_text(t) == m.text_sha256 for t, m in zip(texts, mems))
        print(f"{folder}: {ok} of {len(mems)} exact memories decode to their texts", flush=True)
        total, same = total + len(mems), same + ok
    print(f"all: {same} of {total}")
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
