"""What the benches share: where a run came from, the table and JSON of its rows, an eval folder's
memories, random-weight models in the shapes of real ones. Every bench imports these from here and
from memtok, never from another bench or from tests/."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from memtok import Memory, MemoryCodec
from memtok.files import atomic_write
from memtok.model.model import FrozenLM
from memtok.model.placement import TORCH_DTYPES, fix_numerics
from memtok.runs.provenance import environment
from memtok.testing import build_tokenizer

ROOT = Path(__file__).resolve().parent.parent
PAPER_DATA = "../shared/data/paper"  # the paper's three files, beside the project for developers and CI


def paper_files(folder: str = PAPER_DATA) -> dict[str, str]:
    """The paper's evaluation files in `folder`, by the short names the benches give them."""
    return {"r100": f"{folder}/raschka_chunks_100.csv", "r1000": f"{folder}/raschka_chunks_1000.csv",
            "chunks": f"{folder}/chunks.csv"}


FORTUNES = "/usr/share/games/fortunes"  # Debian's fortunes-min and fortunes-es (`make held-out-text`)


def quotations(n: int, lengths: tuple[int, int] = (100, 230), folder: str = FORTUNES) -> list[str]:
    """A set of another kind than any training text: `n` quotations, half English (fortunes-min), half
    Spanish (fortunes-es), of `lengths` characters, whitespace made single spaces, drawn with a fixed
    seed. Fortune packages are kept out of every start's training text (`memtok.training.text_sources`)."""
    import random

    chosen = []
    english = [Path(folder, name) for name in ("fortunes", "literature", "riddles")]
    for files in (english, sorted(Path(folder, "es").glob("*.fortunes"))):
        entries = [" ".join(e.split()) for p in files if p.is_file()
                   for e in p.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
        fitting = sorted({e for e in entries if lengths[0] <= len(e) <= lengths[1]})
        if len(fitting) < n // 2:
            raise SystemExit(f"{len(fitting)} quotations of {lengths[0]}-{lengths[1]} characters in {folder}: "
                             "install fortunes-min and fortunes-es (make held-out-text)")
        chosen += random.Random(0).sample(fitting, n // 2)
    return chosen


def add_model_options(ap: argparse.ArgumentParser, data: bool = False) -> None:
    """`--model` (default: the embedded SmolLM2-135M-Instruct) and, with `data`, `--data-dir` (the
    folder of the paper's files): what every bench that loads a model, or reads the paper's files
    by name, takes."""
    ap.add_argument("--model", default=None, help="a hub id, model folder or .gguf (default: the embedded model)")
    if data:
        ap.add_argument("--data-dir", default=PAPER_DATA, help="the folder of the paper's three CSV files")


def provenance() -> dict:
    """The command, and the commit, versions, threads and CPU (`memtok.runs.provenance`) a figure came from."""
    return {"command": " ".join([Path(sys.executable).name, *sys.argv]), **environment()}


def write_json(path: str | Path, payload: dict) -> None:
    """`payload` and its provenance, written whole or not at all."""
    text = json.dumps({**payload, "provenance": provenance()}, indent=1, default=str)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def report(rows: list[dict], columns: dict[str, Callable[[dict], object]], args: argparse.Namespace) -> None:
    """A markdown table of `rows` on standard output, and with `--json` the raw rows and arguments."""
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(cell(r)) for cell in columns.values()) + " |")
    if args.json:
        write_json(args.json, {"args": vars(args), "rows": rows})


def folder_model(folder: str | Path) -> str:
    """The model an eval folder's memories were made with (its run.json)."""
    return json.loads(Path(folder, "run.json").read_text())["model"]


def folder_memories(folder: str | Path, exact_only: bool = False) -> dict[int, Memory]:
    """An eval folder's memories (its `memories/`), by row index."""
    mems = {int(p.stem): Memory.load(p) for p in sorted(Path(folder, "memories").glob("*.safetensors"))}
    return {i: m for i, m in mems.items() if m.exact or not exact_only}


# Queries of three kinds for the search benches: a span of a text, the span with two words changed,
# and a question about its longest words.
KINDS = ("span", "changed", "question")


def queries(codec: MemoryCodec, texts: dict[int, str], seed: int = 0, words_from: Iterable[str] = ()
            ) -> list[tuple[str, int, str]]:
    """(kind, index of the text it comes from, query) for every text; changed words come from
    `words_from` (by default, the texts)."""
    rng = random.Random(seed)
    words = sorted({w for t in (words_from or texts.values()) for w in t.split() if w.isalpha() and len(w) > 3})
    out = []
    for i, text in texts.items():
        ids = codec.lm.tokenize(text)
        start = len(ids) // 4
        span = codec.lm.detokenize(ids[start:start + 12]).strip()
        out.append(("span", i, span))
        parts = span.split()
        for j in rng.sample(range(len(parts)), min(2, len(parts))):
            parts[j] = rng.choice(words)
        out.append(("changed", i, " ".join(parts)))
        # ties in length go by spelling, not by the process's hash order
        longest = sorted({w.strip(".,;:()'\"") for w in span.split()}, key=lambda w: (-len(w), w))[:3]
        out.append(("question", i, f"What does it say about {', '.join(longest)}?"))
    return out


def minilm():
    import tempfile

    from all_minilm_l6_v2 import extract_model
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(extract_model(tempfile.mkdtemp())), device="cpu")


# Encodes measured side by side: what each run's row holds.

def p90(xs: list[int]) -> int:
    return sorted(xs)[max(0, round(0.9 * len(xs)) - 1)]


class Passes:
    """An on_step callback that counts the passes and keeps each text's token accuracy at step 0,
    the start's own."""

    def __init__(self) -> None:
        self.count, self.starts = 0, []

    def __call__(self, info) -> None:
        self.count += 1
        self.starts.extend(p.accuracy for p in info.texts if p.step == 0)


def row(exact: list[bool], steps: list[int], wall: float, passes: Passes, start: str, retried: int = 0,
        restarted: int = 0) -> dict:
    return {"exact": f"{sum(exact)}/{len(exact)}", "median steps": statistics.median(steps),
            "p90 steps": p90(steps), "max steps": max(steps), "total steps": sum(steps),
            "wall seconds": round(wall, 1), "passes": passes.count,
            "seconds per pass": round(wall / max(1, passes.count), 3), "retried segments": retried,
            "restarted segments": restarted,
            "start accuracy": round(statistics.fmean(passes.starts), 4), "start": start}


def encode_ids(codec: MemoryCodec, targets: list[list[int]], recipe: str, semantic: str | None = None,
               start: object | None = None) -> tuple[list, float, Passes]:
    """Each target in one vector: the (index, result, exact) of each, the wall time, the passes.
    `start`: what a learned init starts from instead of the model's start (the settings' own field)."""
    from contextlib import closing

    passes = Passes()
    began = time.perf_counter()
    settings = codec.resolve(k=1, recipe=recipe, semantic=semantic)
    if start is not None:
        settings = dataclasses.replace(settings, start=start)
    with closing(codec.encode_ids(targets, settings, show_progress_bar=True, on_step=passes)) as it:
        results = list(it)
    return results, time.perf_counter() - began, passes


def run_ids(codec: MemoryCodec, targets: list[list[int]], recipe: str, semantic: str | None = None,
            start: object | None = None) -> dict:
    """Each target in one vector (`start` as in `encode_ids`)."""
    results, wall, passes = encode_ids(codec, targets, recipe, semantic, start)
    name = start.name if start is not None else codec.resolve(k=1, recipe=recipe).start_name
    return row([e for _, _, e in results], [r.steps for _, r, _ in results], wall, passes, name,
               restarted=sum(r.restarts > 0 for _, r, _ in results))


# Random-weight models for a machine that cannot hold the real weights (a lent GPU takes 64 MiB of
# files): the numerics of a shape, its memory and its kernels, not quality. The configs of the real
# models (their config.json), less what changes nothing here.
SHAPES = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
}


# The spread of a trained model's logits over its vocabulary: 3.54 and 3.40 on two sentences of the
# embedded SmolLM2-135M (their maxima 19.8 and 26.8), where random weights in its shape give 0.48. Drift
# and rounding scale with the logits, so a random model is scaled to this before it measures them.
TRAINED_LOGIT_STD = 3.5


def random_lm(shape: str, device: str, dtype: str = "float32", seed: int = 0,
              logit_std: float | None = TRAINED_LOGIT_STD) -> FrozenLM:
    """A `FrozenLM` of Llama architecture in `shape` (`SHAPES`), random weights made on `device`, its
    final norm scaled so that its logits spread as a trained model's (`logit_std`; None: as drawn)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    config = LlamaConfig(**SHAPES[shape], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(TORCH_DTYPES[dtype])
    if logit_std is not None:
        with torch.no_grad():
            probe = torch.randint(0, len(tok), (1, 32), generator=torch.Generator().manual_seed(seed)).to(device)
            drawn = model(input_ids=probe).logits.float().std(-1).mean()
            model.model.norm.weight.mul_(logit_std / drawn)  # logits are linear in the final norm's weight
    fix_numerics()
    return FrozenLM(model.requires_grad_(False).eval(), tok, f"random {shape}")
