"""Does a semantic memory find its text when the query says the same thing in other words?

The span, changed-span and question queries of `bench/retrieval.py` are built from a text's own
words, which rewards counting shared words. `bench/paraphrases.json` holds questions written apart
from the texts, 30 for `raschka_chunks_100.csv` (English) and 30 for `chunks.csv` (Spanish), each
naming its text. Every text of the file's store (its first `store_rows` rows) is ranked against
each question, side by side in one run:

- semantic memories, by teacher: a memory's component in its subspace is its segments' codes (to
  float32 rounding: `tests/test_semantic.py`), so what the codes find, each memory scored by its
  best segment of the default plan (`EncodeRun`'s cut, no optimisation), is what a vector search
  over those memories finds. Teachers: the model's own middle layer (memtok's `--semantic`), and
  all-MiniLM-L6-v2 randomly projected to the same 64 numbers;
- the same teachers, and MiniLM unprojected, on whole texts; BM25 on the texts.

The likelihood method needs the memories themselves and is not in this run.

    python bench/paraphrases.py --json docs/results/bench/paraphrases.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from retrieval import minilm
from rows import report

from memtok import MemoryCodec
from memtok.encode_run import EncodeRun
from memtok.runs.sources import read_source
from memtok.semantic import SemanticSpace

QUESTIONS = Path(__file__).with_name("paraphrases.json")
FILES = {"raschka_chunks_100": "../shared/data/paper/raschka_chunks_100.csv", "chunks": "../shared/data/paper/chunks.csv"}


def best_segments(pieces: torch.Tensor, owner: list[int], n_texts: int, asked: torch.Tensor) -> torch.Tensor:
    """[Q, texts]: each text's best cosine over its segments' rows of `pieces`."""
    cos = F.normalize(asked, dim=1) @ F.normalize(pieces, dim=1).T
    out = torch.full((len(asked), n_texts), -2.0, dtype=cos.dtype)
    return out.scatter_reduce(1, torch.tensor(owner).expand(len(asked), -1), cos, "amax")


def recalls(scores: torch.Tensor, wanted: list[int]) -> dict[str, float]:
    ranked = scores.argsort(dim=1, descending=True)
    return {f"recall@{n}": round(statistics.fmean(int(w in row[:n].tolist()) for w, row in zip(wanted, ranked)), 3)
            for n in (1, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import bm25s

    codec = MemoryCodec.from_pretrained()
    lm, embedder = codec.lm, minilm()
    space = SemanticSpace.of(lm)
    to_64 = torch.randn(space.rank, 384, generator=torch.Generator().manual_seed(0))  # as bench/retrieval.py's

    def own(texts: list[str]) -> torch.Tensor:
        ids = [lm.tokenize(t) for t in texts]
        return torch.cat([space.codes(lm, ids[i:i + 16]).cpu() for i in range(0, len(ids), 16)])

    def mini(texts: list[str]) -> torch.Tensor:
        return embedder.encode(texts, convert_to_tensor=True).cpu()

    spec, rows = json.loads(QUESTIONS.read_text()), []
    for name, path in FILES.items():
        texts = read_source(path, limit=spec[name]["store_rows"]).texts
        wanted, questions = zip(*spec[name]["questions"])
        run = EncodeRun(lm, texts, codec.resolve())  # the default plan's segments
        pieces = [p.text for p in run.pieces]
        owner = [p.text_index for p in run.pieces]
        by_method = {
            "memories, the model's own code (--semantic today)": best_segments(own(pieces), owner, len(texts),
                                                                                own(list(questions))),
            "memories, MiniLM projected to 64": best_segments(mini(pieces) @ to_64.T, owner, len(texts),
                                                              mini(list(questions)) @ to_64.T),
            "the model's own code on whole texts": F.normalize(own(list(questions)), dim=1)
            @ F.normalize(own(texts), dim=1).T,
            "MiniLM on whole texts (384)": F.normalize(mini(list(questions)), dim=1) @ F.normalize(mini(texts), dim=1).T,
        }
        index = bm25s.BM25()
        index.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
        bm25 = torch.zeros(len(questions), len(texts))
        for q, question in enumerate(questions):
            docs, scores = index.retrieve(bm25s.tokenize([question], show_progress=False), k=len(texts),
                                          show_progress=False)
            bm25[q, torch.tensor(docs[0].tolist())] = torch.tensor(scores[0].tolist())
        by_method["BM25 on texts"] = bm25
        for method, scores in by_method.items():
            rows.append({"file": name, "texts": len(texts), "segments": len(pieces), "questions": len(questions),
                         "method": method, **recalls(scores.double(), list(wanted))})
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
