"""Which code a semantic memory should hold: recall of the codes themselves, teacher by rank by
projection, side by side in one run on each file's texts.

A semantic memory's component in its subspace is its text's code (to float32 rounding:
`tests/test_semantic.py`), so a vector search over the memories finds what the codes find on the
texts (`bench/retrieval.py` shows it with the memories). That lets every way of making the code be
compared here without encoding anything:

- the teacher: the frozen model's middle-layer hidden states, mean-pooled (memtok's), or
  all-MiniLM-L6-v2 (English, a second model);
- the rank r of the subspace (what it costs the memory is in docs/retrieval.md);
- the projection to r numbers: memtok's fixed random matrix, or PCA whitening fitted on a fixed
  corpus that ships with Python (`pydoc_data.topics`, 96-token pieces), which removes the pooled
  states' few dominant directions.

Queries as in `bench/retrieval.py` (spans, changed spans, questions).

    python bench/semantic_codes.py --json docs/results/bench/semantic-codes.json
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from common import KINDS, add_model_options, minilm, queries, report

from memtok import MemoryCodec
from memtok.runs.sources import read_source
from memtok.start.semantic import SemanticSpace
from memtok.start.start_nets import text_features

FILES = {"raschka_chunks_100": (100, 30), "chunks": (96, 15)}  # texts, and texts asked about


def pooled(codec: MemoryCodec, texts: list[str], layer: int, batch: int = 16) -> torch.Tensor:
    ids = [codec.lm.tokenize(t) for t in texts]
    return torch.cat([text_features(codec.lm, ids[i:i + batch], (layer,)) for i in range(0, len(ids), batch)]).double()


def whitening(codec: MemoryCodec, layer: int, limit: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, principal directions and their spreads of the pooled states of pydoc's topics (the
    first `limit` of their 96-token pieces, or all)."""
    from pydoc_data.topics import topics

    pieces = []
    for name in sorted(topics):
        ids = codec.lm.tokenize(topics[name])
        pieces += [codec.lm.detokenize(ids[j:j + 96]) for j in range(0, len(ids) - 32, 96)]
    pieces = pieces[:limit]
    feats = pooled(codec, pieces, layer)
    mean = feats.mean(0)
    spreads, directions = torch.linalg.eigh(torch.cov((feats - mean).T))
    return mean, directions.flip(1), spreads.flip(0).clamp_min(1e-12).sqrt()


def recalls(texts: torch.Tensor, asked: torch.Tensor, owners: list[int]) -> dict[str, float]:
    """recall@1 and @5 of each query kind, by cosine."""
    ranked = (F.normalize(asked, dim=1) @ F.normalize(texts, dim=1).T).argsort(dim=1, descending=True)
    out = {}
    for n in (1, 5):
        for kind in KINDS:
            out[f"{kind}@{n}"] = round(statistics.fmean(int(want in row[:n].tolist()) for (k, want), row
                                                        in zip(owners, ranked) if k == kind), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="32,64")
    ap.add_argument("--json", default=None)
    ap.add_argument("--whitening-pieces", type=int, default=None, help="pieces of pydoc's topics the PCA is fitted "
                                                                        "on (default: all)")
    add_model_options(ap, data=True)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    embedder = minilm()
    layer = codec.lm.model.config.num_hidden_layers // 2
    mean, directions, spreads = whitening(codec, layer, args.whitening_pieces)
    rows = []
    for name, (limit, per_kind) in FILES.items():
        texts = read_source(f"{args.data_dir}/{name}.csv", limit=limit).texts
        asked = sorted({j * len(texts) // per_kind for j in range(per_kind)})
        qs = queries(codec, {i: texts[i] for i in asked}, words_from=texts)
        owners = [(kind, i) for kind, i, _ in qs]
        self_t, self_q = pooled(codec, texts, layer), pooled(codec, [q for *_, q in qs], layer)
        mini_t = embedder.encode(texts, convert_to_tensor=True).cpu().double()
        mini_q = embedder.encode([q for *_, q in qs], convert_to_tensor=True).cpu().double()
        rows.append({"file": name, "teacher": "MiniLM", "rank": mini_t.shape[1], "projection": "none",
                     **recalls(mini_t, mini_q, owners)})
        for rank in map(int, args.ranks.split(",")):
            project = SemanticSpace.of(codec.lm, "self", rank=rank).projection.cpu().double()  # memtok's space at this rank
            rows.append({"file": name, "teacher": "the model (memtok)", "rank": rank, "projection": "random (memtok)",
                         **recalls(self_t @ project.T, self_q @ project.T, owners)})
            white = directions[:, :rank] / spreads[:rank]
            rows.append({"file": name, "teacher": "the model (memtok)", "rank": rank, "projection": "PCA whitening",
                         **recalls((self_t - mean) @ white, (self_q - mean) @ white, owners)})
            to_code = torch.randn(rank, mini_t.shape[1], generator=torch.Generator().manual_seed(0)).double()
            rows.append({"file": name, "teacher": "MiniLM", "rank": rank, "projection": "random",
                         **recalls(mini_t @ to_code.T, mini_q @ to_code.T, owners)})
    report(rows, {k: (lambda r, k=k: r[k]) for k in rows[0]}, args)


if __name__ == "__main__":
    main()
