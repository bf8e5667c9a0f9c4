"""What several test files share: the tiny models and the texts they know, running the CLI in this
process or in a subprocess, data files, texts whose difficulty the tests pin down, and an
optimisation stopped part-way. Test files import these from here, never from conftest."""

import csv
import json
import os
import subprocess
import sys

import pytest

from memtok import EncodeConfig
from memtok.cli import main
from memtok.encode.checkpoint import Checkpoint
from memtok.encode.jobs import Job
from memtok.encode.optimise import optimise
from memtok.encode.resolved import resolve
from memtok.testing import TEXTS, build_tiny_model_dir, build_tokenizer, fit  # noqa: F401 - the suite's tiny models

LINES = [TEXTS[0], TEXTS[4], TEXTS[5]]
# the tiny model knows its sentences after <s>: a turn opened by <s> and closed by another special
# token (<|endoftext|>) is a chat it can answer in
CHAT = "{% for m in messages %}<s>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|endoftext|>{% endif %}"

# Where the tiny models run: `MEMTOK_TEST_DEVICE=cuda pytest -m "not slow"` runs the fast tier on a
# GPU (the CLI's own default is CUDA when present, so its tests follow without the variable).
DEVICE = os.environ.get("MEMTOK_TEST_DEVICE", "cpu")
# Tests that compare a text's steps or bits in a batch with the same text alone (or in another
# batch) run on the CPU: on CUDA, cuBLAS picks kernels by shape, so a row's arithmetic may change
# with its batch without any bug (memtok's verdicts allow for it: docs/trust.md).
bits_on_cpu = pytest.mark.skipif(DEVICE != "cpu", reason="compares bits across batch shapes, which CUDA may change")


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


def with_chat(model_dir, path) -> str:
    """A copy of a tiny model whose tokenizer has the chat template `CHAT`."""
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(model_dir, path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHAT
    tok.save_pretrained(path)
    return str(path)


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


