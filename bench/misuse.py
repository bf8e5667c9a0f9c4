"""Misuse, measured on the embedded instruct model in its own chat template.

1. The plain request against the memory: "Repeat exactly: <text>" as a user turn, greedy, against
   the memory (exact by construction): how often the request gives the text back.
2. A memory in front of an ordinary prompt: questions the model answers right alone, then the same
   questions with a memory's vectors before the chat (where a service would take `inputs_embeds`),
   and with a random vector of the same norm (the control).

    python bench/misuse.py --parts repeat --memories docs/results/raschka100-k1-first50 \
        --json docs/results/bench/misuse.json
    python bench/misuse.py --parts prepend --memories docs/results/raschka100-k1-first50 \
        docs/results/chunks-plan --json docs/results/bench/misuse-prepended.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import add_model_options, folder_memories, report, write_json
from transformers import GenerationConfig

from memtok import Memory, MemoryCodec
from memtok.model.layout import Layout
from memtok.runs.sources import read_source

# questions a 135M instruct model can answer, with what a right answer contains (any of)
QUESTIONS = [
    ("What is the capital of France?", ["Paris"]),
    ("How many days are there in a week?", ["seven", "7"]),
    ("What color is the sky on a clear day?", ["blue"]),
    ("What is 2 + 2?", ["4", "four"]),
    ("Which planet do we live on?", ["Earth"]),
    ("What is the opposite of hot?", ["cold"]),
    ("How many legs does a spider have?", ["eight", "8"]),
    ("What do bees make?", ["honey"]),
    ("What is the largest ocean on Earth?", ["Pacific"]),
    ("What gas do plants take in from the air?", ["carbon dioxide", "CO2"]),
    ("What is frozen water called?", ["ice"]),
    ("How many hours are in a day?", ["24", "twenty-four"]),
    ("What is the capital of Japan?", ["Tokyo"]),
    ("What is the chemical symbol for gold?", ["Au"]),
    ("Who wrote Romeo and Juliet?", ["Shakespeare"]),
    ("What is the boiling point of water in Celsius?", ["100"]),
    ("How many continents are there?", ["seven", "7"]),
    ("What animal is known as the king of the jungle?", ["lion"]),
    ("What is the capital of Italy?", ["Rome"]),
    ("How many sides does a triangle have?", ["three", "3"]),
]


def chat_ids(codec: MemoryCodec, user: str) -> list[int]:
    text = codec.lm.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                  add_generation_prompt=True)
    return codec.lm.tokenizer(text, add_special_tokens=False).input_ids  # the template's special tokens parsed


@torch.no_grad()
def generate(codec: MemoryCodec, ids: list[int], before: torch.Tensor | None, max_new_tokens: int) -> str:
    """Greedy continuation of `ids`, with the input vectors `before` ahead of them (a memory's prompt and vectors)."""
    lm = codec.lm
    x = lm.embed(torch.tensor(ids, device=lm.device))
    if before is not None:
        x = torch.cat([before.to(x), x])
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=lm.eos_id,
                              pad_token_id=lm.eos_id)
    out = lm.model.generate(inputs_embeds=x[None], attention_mask=torch.ones(1, len(x), dtype=torch.long,
                                                                             device=lm.device), generation_config=config)
    return lm.detokenize([t for t in out[0].tolist() if t != lm.eos_id])


def memory_prefix(codec: MemoryCodec, mem: Memory) -> torch.Tensor:
    """A memory's prompt and (first segment's) vectors as input vectors: what goes in front of a chat."""
    vectors, _ = mem.segment_vectors()[0]
    layout = Layout(tuple(mem.prefix_ids), (), len(vectors))
    return layout.inputs(codec.lm, codec.inputs(vectors, mem.storage_dtype).to(codec.lm.device))


def repeat_rows(codec: MemoryCodec, data: str, limit: int) -> dict:
    texts = read_source(data, limit=limit).texts
    right = 0
    for text in texts:
        said = generate(codec, chat_ids(codec, f"Repeat exactly: {text}"), None, len(codec.lm.tokenize(text)) + 16)
        right += said.strip() == text.strip()
    return {"data": Path(data).name, "texts": len(texts), "request gives the text": right,
            "memory gives the text": "all exact memories (by construction)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["../shared/data/paper/raschka_chunks_100.csv",
                                                  "../shared/data/paper/chunks.csv"])
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--memories", nargs="+", required=True, help="eval folders whose exact memories go in front")
    ap.add_argument("--prepend", type=int, default=5, help="memories of each folder put in front of every question")
    ap.add_argument("--parts", default="repeat,prepend", help="which of the two measurements to run")
    ap.add_argument("--json", default=None)
    add_model_options(ap)
    args = ap.parse_args()
    codec = MemoryCodec.from_pretrained(args.model)
    found: dict = {"args": vars(args)}
    if "repeat" in args.parts:
        found["repeat"] = [repeat_rows(codec, d, args.limit) for d in args.data]
        report(found["repeat"], {k: (lambda r, k=k: r[k]) for k in found["repeat"][0]}, args)
    if "prepend" in args.parts:
        answered = [(q, ok) for q, ok in QUESTIONS
                    if any(a.lower() in generate(codec, chat_ids(codec, q), None, 24).lower() for a in ok)]
        found["questions"] = [q for q, _ in answered]
        found["prepended"] = [row for folder in args.memories for row in prepended_rows(codec, folder, answered, args.prepend)]
        report(found["prepended"], {k: (lambda r, k=k: r[k]) for k in found["prepended"][0]}, args)
    if args.json:
        write_json(args.json, found)


def prepended_rows(codec: MemoryCodec, folder: str, answered: list, n: int) -> list[dict]:
    """How many of the `answered` questions stay answered right behind each of `folder`'s first `n`
    exact memories, and behind random vectors of the same norms."""
    mems = [m for m in folder_memories(folder, exact_only=True).values()
            if m.model_fingerprint == codec.lm.fingerprint][:n]
    gen = torch.Generator().manual_seed(0)
    real = [(memory_prefix(codec, m), len(m.segment_vectors()[0][0])) for m in mems]
    rows = []
    for name, prefixes in (("a memory in front", [p for p, _ in real]),
                           ("random vectors of the memory's norms in front", [_random_like(p, k, gen) for p, k in real])):
        right = total = 0
        for before in prefixes:
            for q, ok in answered:
                said = generate(codec, chat_ids(codec, q), before, 24).lower()
                right, total = right + any(a.lower() in said for a in ok), total + 1
        rows.append({"memories of": Path(folder).name, "set-up": name, "memories": len(prefixes),
                     "questions answered right alone": len(answered), "answers right": f"{right}/{total}",
                     "share": round(right / total, 3) if total else None})
    return rows


def _random_like(prefix: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """The same prompt tokens, each of the `k` memory vectors that end it replaced by a random
    direction of its norm."""
    out = prefix.clone()
    vectors = out[-k:]
    noise = torch.randn(vectors.shape, generator=gen).to(vectors)
    out[-k:] = noise / noise.norm(dim=1, keepdim=True) * vectors.norm(dim=1, keepdim=True)
    return out


if __name__ == "__main__":
    main()
