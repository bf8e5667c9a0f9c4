"""What several test files share: running the CLI in this process or in a subprocess, data files,
texts whose difficulty the tests pin down, and an optimisation stopped part-way."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import TEXTS

from memtok import EncodeConfig
from memtok.checkpoint import Checkpoint
from memtok.cli import main
from memtok.layout import Layout
from memtok.optimise import Job, optimise
from memtok.resolved import Resolved

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
        self.layout, self.config = Layout.build(self.lm, "{memory}", 1, True), config or EncodeConfig(k=1, recipe="memtok")
        self.job = Job(0, codec.target_ids(SLOW_TEXT), 1)
        with pytest.raises(KeyboardInterrupt):
            list(optimise(self.lm, Resolved(self.config, self.layout), [self.job], Stop(at), self.checkpoint()))

    def checkpoint(self, config: EncodeConfig | None = None) -> Checkpoint:
        return Checkpoint(self.path, self.lm, Resolved(config or self.config, self.layout))


