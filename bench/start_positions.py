"""Where a start's first guess is right: teacher-forced token accuracy by position in the text,
before any step, for start files beside the mean embedding.

Held-out accuracy says how much a learned start knows; this says what: a start that knew the text
would get the first tokens right (nothing before them tells the model what they are), one that knew
the topic would lift every position a little. Texts: the held-out pieces `train-start` scores
(`memtok.training.texts`, no evaluation rows), so the figures match a start's own held-out accuracy.

    python bench/start_positions.py memtok/starts/smollm2-135m.safetensors --json positions.json
"""

from __future__ import annotations

import argparse

import torch
from common import add_model_options, report

from memtok import MemoryCodec
from memtok.limits import PLACEHOLDER
from memtok.model.layout import Layout
from memtok.model.model import FrozenLM
from memtok.start.start import LearnedStart
from memtok.training.text_sources import TEXT_SOURCES
from memtok.training.texts import training_pieces

BANDS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 64))  # target positions: the first token is 0


@torch.no_grad()
def hits_by_position(lm: FrozenLM, vector: torch.Tensor, text: list[int]) -> torch.Tensor:
    """1.0 where greedy prediction after [the default encode's context, the text so far] is the next
    token (or EOS): the layout `train-start` scores."""
    layout = Layout.build(lm, PLACEHOLDER, 1, bos=True)
    seq = layout.inputs(lm, vector, text)
    predicted = lm.model(inputs_embeds=seq[None], use_cache=False).logits[0, layout.first_target:].argmax(-1)
    return (predicted.cpu() == torch.tensor([*text, lm.eos_id])).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("starts", nargs="+", help="start files (.safetensors)")
    ap.add_argument("--limit", type=int, default=96, help="held-out pieces (train-start scores 96)")
    ap.add_argument("--text", default=",".join(TEXT_SOURCES), help="the training text's sources whose held-out "
                                                                  "pieces are scored (train-start's --text)")
    ap.add_argument("--json", default=None)
    add_model_options(ap)
    args = ap.parse_args()
    lm = MemoryCodec.from_pretrained(args.model).lm
    held = training_pieces(lm, args.text.split(","), {}, (8, 40)).held[:args.limit]
    guesses = {"mean embedding": lambda text: lm.embedding_mean[None]}
    for path in args.starts:
        start = LearnedStart.load(path)
        start.net.to(lm.device).eval()
        guesses[path] = lambda text, start=start: start.vectors(lm, [text])[0]
    rows = []
    for name, guess in guesses.items():
        hits = [hits_by_position(lm, guess(text), text) for text in held]
        row = {"start": name}
        for lo, hi in BANDS:
            band = torch.cat([h[lo:hi] for h in hits])
            row[f"positions {lo}-{hi - 1}"] = round(float(band.mean()), 3)
        row["all"] = round(float(torch.cat(hits).mean()), 4)
        rows.append(row)
        print(row, flush=True)
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
