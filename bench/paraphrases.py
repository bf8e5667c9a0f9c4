"""Does a semantic memory find its text when the query says the same thing in other words?

The span, changed-span and question queries of `bench/retrieval.py` are built from a text's own
words, which rewards counting shared words. `bench/paraphrases.json` holds questions written apart
from the texts, 30 for `raschka_chunks_100.csv` (English) and 30 for `chunks.csv` (Spanish), each
naming its text. Every text of the file's store (its first `store_rows` rows) is ranked against
each question, side by side in one run:

- semantic memories, by teacher (`memtok.start.teachers`): a memory's component in its subspace is its
  segments' codes (to float32 rounding: `tests/test_semantic.py`, `tests/test_teachers.py`), so
  what the codes find, each memory scored by its best segment of the default plan (`TextSchedule`'s
  cut, no optimisation), is what a vector search over those memories finds;
- the same teachers' codes of whole texts, MiniLM's own 384 numbers on whole texts, and BM25;
- the likelihood method (`memtok.store.search`, every scoring), which needs the memories
  themselves: `--memories FILE=FOLDER,...` names eval folders that hold the file's store rows.

    R=docs/results
    python bench/paraphrases.py --memories raschka_chunks_100=$R/raschka100-k1-first50,$R/raschka100-k1-rows50-100 \\
        --memories chunks=$R/chunks-plan,$R/chunks-plan-rows20-96 --json docs/results/bench/paraphrases.json

`--teachers self,minilm,ID` adds any sentence-transformers model (a stronger one needs a network).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from common import add_model_options, report

from memtok import MemoryCodec
from memtok.encode.schedule import TextSchedule
from memtok.format.memory import Memory
from memtok.runs.sources import read_source
from memtok.start.semantic import SemanticSpace
from memtok.store.search import SCORINGS, best_per_memory, token_logprobs

QUESTIONS = Path(__file__).with_name("paraphrases.json")
TEACHERS = ("self", "minilm")  # the ones that install offline
FILES = ("raschka_chunks_100", "chunks")  # the paper's files the questions are about


def best_segments(segments: torch.Tensor, owner: list[int], n_texts: int, asked: torch.Tensor) -> torch.Tensor:
    """[Q, texts]: each text's best cosine over its segments' rows of `segments`."""
    cos = F.normalize(asked, dim=1) @ F.normalize(segments, dim=1).T
    out = torch.full((len(asked), n_texts), -2.0, dtype=cos.dtype)
    return out.scatter_reduce(1, torch.tensor(owner).expand(len(asked), -1), cos, "amax")


def recalls(scores: torch.Tensor, wanted: list[int]) -> dict[str, float]:
    ranked = scores.argsort(dim=1, descending=True)
    return {f"recall@{n}": round(statistics.fmean(int(w in row[:n].tolist()) for w, row in zip(wanted, ranked)), 3)
            for n in (1, 5)}


def likelihoods(codec: MemoryCodec, folders: str, n_texts: int, questions: list[str]) -> dict[str, torch.Tensor]:
    """[Q, texts] scores of the likelihood method, per scoring, over the memories of eval folders
    (comma-separated) that hold the store's rows 0..n_texts-1 between them (one model pass per
    question, read by every scoring)."""
    paths = sorted((p for f in folders.split(",") for p in (Path(f) / "memories").glob("*.safetensors")),
                   key=lambda p: int(p.stem))
    if [int(p.stem) for p in paths] != list(range(n_texts)):
        raise SystemExit(f"{folders} must hold the memories of rows 0-{n_texts - 1}, each once")
    memories = [Memory.load(p) for p in paths]
    passes = [token_logprobs(codec, memories, q) for q in questions]
    return {f"likelihood {name}": torch.tensor([best_per_memory(owners, score(logp), n_texts)
                                                for owners, logp in passes]) for name, score in SCORINGS.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", action="append", default=[], metavar="FILE=FOLDER,...",
                    help=f"eval folders with the memories of FILE's store rows ({', '.join(FILES)})")
    ap.add_argument("--teachers", default=",".join(TEACHERS),
                    help="teachers to compare (memtok.start.teachers: self, minilm, or any sentence-transformers id "
                         "or folder, e.g. a stronger model for users with a network)")
    ap.add_argument("--json", default=None)
    add_model_options(ap, data=True)
    args = ap.parse_args()
    if any(m.partition("=")[0] not in FILES or not m.partition("=")[2] for m in args.memories):
        raise SystemExit(f"--memories takes FILE=FOLDER,... with FILE one of {', '.join(FILES)}")
    folders = dict(m.split("=", 1) for m in args.memories)
    import bm25s

    codec = MemoryCodec.from_pretrained(args.model)
    lm = codec.lm
    spaces = {name: SemanticSpace.of(lm, name) for name in args.teachers.split(",")}
    minilm = (spaces.get("minilm") or SemanticSpace.of(lm, "minilm")).teacher.model

    def codes(space: SemanticSpace, texts: list[str]) -> torch.Tensor:
        ids = [lm.tokenize(t) for t in texts]
        return torch.cat([space.codes(lm, ids[i:i + 16]).cpu() for i in range(0, len(ids), 16)])

    spec, rows = json.loads(QUESTIONS.read_text()), []
    for name in FILES:
        texts = read_source(f"{args.data_dir}/{name}.csv", limit=spec[name]["store_rows"]).texts
        wanted, questions = zip(*spec[name]["questions"])
        questions = list(questions)
        run = TextSchedule(lm, texts, codec.resolve())  # the default plan's segments
        segments = [p.text for p in run.segments]
        owner = [p.text_index for p in run.segments]
        by_method = {}
        for teacher, space in spaces.items():
            asked = codes(space, questions)
            by_method[f"memories, --semantic={teacher}"] = best_segments(codes(space, segments), owner, len(texts), asked)
            by_method[f"{teacher}'s code on whole texts"] = F.normalize(asked, dim=1) @ F.normalize(
                codes(space, texts), dim=1).T
        full = [minilm.encode(t, convert_to_tensor=True).cpu() for t in (questions, texts)]
        by_method["MiniLM on whole texts (384)"] = F.normalize(full[0], dim=1) @ F.normalize(full[1], dim=1).T
        index = bm25s.BM25()
        index.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
        bm25 = torch.zeros(len(questions), len(texts))
        for q, question in enumerate(questions):
            docs, scores = index.retrieve(bm25s.tokenize([question], show_progress=False), k=len(texts),
                                          show_progress=False)
            bm25[q, torch.tensor(docs[0].tolist())] = torch.tensor(scores[0].tolist())
        by_method["BM25 on texts"] = bm25
        if name in folders:
            by_method.update(likelihoods(codec, folders[name], len(texts), questions))
        for method, scores in by_method.items():
            rows.append({"file": name, "texts": len(texts), "segments": len(segments), "questions": len(questions),
                         "method": method, **recalls(scores.double(), list(wanted))})
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
