"""What several test files share: the tiny models and the texts they know, running the CLI in this
process or in a subprocess, data files, texts whose difficulty the tests pin down, and an
optimisation stopped part-way. Test files import these from here, never from conftest."""

import csv
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from memtok import EncodeConfig
from memtok.checkpoint import Checkpoint
from memtok.cli import main
from memtok.jobs import Job
from memtok.optimise import optimise
from memtok.resolved import resolve

# What the tiny model is briefly trained on. An untrained random model cannot carry a text from one
# position to the next, so no memory vector could make it reproduce anything; a few seconds of
# training make it a small language model of these sentences, which memories then select and steer.
TEXTS = [
    "the cat sat on the mat.",
    "the cat ran to the park.",
    "a dog ran in the park.",
    "El perro corre en el parque.",
    "memory tokens turn text into vectors.",
    "vectors turn back into text again.",
    "Die Katze schläft auf dem Sofa.",
    "numbers: 3 + 4 = 7, 10 - 2 = 8.",
]

LINES = [TEXTS[0], TEXTS[4], TEXTS[5]]

# Where the tiny models run: `MEMTOK_TEST_DEVICE=cuda pytest -m "not slow"` runs the fast tier on a
# GPU (the CLI's own default is CUDA when present, so its tests follow without the variable).
DEVICE = os.environ.get("MEMTOK_TEST_DEVICE", "cpu")
# Tests that compare a text's steps or bits in a batch with the same text alone (or in another
# batch) run on the CPU: on CUDA, cuBLAS picks kernels by shape, so a row's arithmetic may change
# with its batch without any bug (memtok's verdicts allow for it: docs/trust.md).
bits_on_cpu = pytest.mark.skipif(DEVICE != "cpu", reason="compares bits across batch shapes, which CUDA may change")


def build_tokenizer(texts: list[str] = TEXTS):
    """A byte-level BPE of 320 tokens trained on `texts`, with BOS <s> and EOS </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<|endoftext|>")


def build_tiny_model_dir(path: str, texts: list[str] = TEXTS, context: int = 64) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_tok = build_tokenizer(texts)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    fit(model, hf_tok, texts)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def fit(model, tok, texts: list[str], steps: int = 150, shifts: tuple[int, ...] = (0,)) -> None:
    """A few hundred milliseconds of next-token training on `texts`, each between BOS and EOS, and
    with `shifts` random tokens after the BOS: a model with learned absolute positions (GPT-2, OPT)
    trained with the text always at position 1 has never seen it one place later, where it sits
    behind a memory vector."""
    rng = random.Random(0)
    rows = [[tok.bos_token_id] + [rng.randrange(3, len(tok)) for _ in range(shift)]
            + tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for t in texts for shift in shifts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.eos_token_id] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


HARD_FOR_ONE = TEXTS[2]  # "a dog ran in the park.": under plain SGD one vector needs ~276 steps, two ~13
SGD = "memtok-sgd"  # the planner is tested on an optimiser whose difficulties these texts pin down


def run(args, capsysbinary, stdin: bytes | None = None, monkeypatch=None):
    """Run `memtok ARGS` in this process; returns (exit code, stdout bytes, stderr text)."""
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def write_csv(path, texts, column="chunk"):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", column])
        w.writeheader()
        w.writerows({"id": i, column: t} for i, t in enumerate(texts))
    return path


def semantic_store_in(codec, folder, teacher: str):
    """A store of TEXTS' semantic memories taught by `teacher`, one vector each, in `folder`/store."""
    from memtok.runs.encode_corpus import run_corpus
    from memtok.runs.sources import read_source

    data = write_csv(folder / "d.csv", TEXTS)
    run_corpus(codec, read_source(str(data)), folder / "store", EncodeConfig(k=1, semantic=teacher),
               show_progress_bar=False)
    return folder / "store"


def memtok(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "memtok", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def memtok_cmd(*args, nproc: int = 1):
    if nproc == 1:
        return [sys.executable, "-m", "memtok", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "memtok", *args]


def finish(cmd, timeout=300):
    p = subprocess.run(cmd, capture_output=True, check=False, timeout=timeout)
    assert p.returncode == 0, p.stderr.decode()[-1500:]
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


SLOW_TEXT = TEXTS[0]  # about 20 steps with one vector on the tiny model
FAST_TEXT = TEXTS[1]  # a few steps


def one_text_curve(codec, recipe: str, max_steps: int | None = None):
    """Optimise SLOW_TEXT with one vector: its result, and its standing at every pass (`on_step`)."""
    points = []
    resolved = codec.resolve(k=1, recipe=recipe, max_steps=max_steps)
    result = next(optimise(codec.lm, resolved, [Job(0, codec.target_ids(SLOW_TEXT), 1)],
                           lambda info: points.extend(info.texts)))
    return result, points


class Stop:
    """An `on_step` that counts the passes and raises KeyboardInterrupt (Ctrl-C) on pass `at`."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.calls = at, 0

    def __call__(self, info) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


class Stopped:
    """The slow text's optimisation with one vector, stopped by Ctrl-C on pass `at` (before that
    pass's update) with a checkpoint at `path`."""

    def __init__(self, codec, path, at: int, config: EncodeConfig | None = None) -> None:
        self.lm, self.path = codec.lm, path
        self.resolved = resolve(self.lm, config or EncodeConfig(k=1, recipe="memtok"))
        self.job = Job(0, codec.target_ids(SLOW_TEXT), 1)
        with pytest.raises(KeyboardInterrupt):
            list(optimise(self.lm, self.resolved, [self.job], Stop(at), self.checkpoint()))

    def checkpoint(self, config: EncodeConfig | None = None) -> Checkpoint:
        return Checkpoint(self.path, self.lm, self.resolved if config is None else resolve(self.lm, config))


