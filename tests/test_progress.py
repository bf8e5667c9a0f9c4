"""Progress in a log: whole lines now and then, not carriage-return redraws."""

import io
import os
import subprocess
import sys

import pytest
from helpers import TEXTS

from memtok.encode.progress import PlainProgress, progress


def test_a_log_gets_plain_lines_at_the_interval():
    log = io.StringIO()
    bar = progress(3, "encoding", "text", file=log)
    assert isinstance(bar, PlainProgress)
    bar.interval = 0.0
    bar.set_postfix(step=7, loss="0.125", refresh=False)
    bar.update(1)
    bar.interval = 3600.0  # nothing more within the interval
    bar.update(1)
    bar.close()
    assert log.getvalue().startswith("encoding: 1/3 texts, ") and log.getvalue().endswith(", step 7, loss 0.125\n")
    assert log.getvalue().count("\n") == 1


def test_a_log_line_says_when_the_work_will_end_from_this_runs_own_pace(monkeypatch):
    clock = iter([0.0, 600.0])  # made at 0 s, 600 s later 10 steps of this run are done
    monkeypatch.setattr("memtok.encode.progress.time.monotonic", lambda: next(clock))
    log = io.StringIO()
    bar = PlainProgress(100, "training", "step", 0.0, log)
    bar.n = 50  # a resumed run: 50 steps were done before it
    bar.update(10)
    assert log.getvalue() == "training: 60/100 steps, 600 s, ETA 40 min\n"  # 40 steps at 60 s each


@pytest.mark.slow  # a subprocess
def test_encode_into_a_log_file_writes_no_carriage_returns(tiny_dir, tmp_path):
    with open(tmp_path / "log.txt", "wb") as log:
        p = subprocess.run([sys.executable, "-m", "memtok", "encode", " ".join(TEXTS[:2]), "--model", tiny_dir,
                            "-o", str(tmp_path / "m.safetensors"), "--max-steps", "60"], stderr=log, check=False,
                           env={**os.environ, "MEMTOK_PROGRESS_SECONDS": "0"}, timeout=300)
    text = (tmp_path / "log.txt").read_text()
    assert p.returncode in (0, 1), text
    assert "\r" not in text
    lines = text.splitlines()
    assert any(line.startswith("encoding: 0/1 texts, ") and "step" in line for line in lines), text
    assert "exact" in lines[-1]  # the summary line ends the log


def test_a_notebook_gets_a_bar_not_a_line_every_thirty_seconds(monkeypatch):
    """A Jupyter kernel's output is no terminal, yet tqdm.auto draws its widget there."""
    import types

    class ZMQInteractiveShell:  # what IPython's kernel shell is called
        pass

    assert isinstance(progress(10, "encoding", "text", file=io.StringIO()), PlainProgress)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    bar = progress(10, "encoding", "text", file=io.StringIO())
    assert not isinstance(bar, PlainProgress)
    bar.close()


def test_loading_a_model_hides_transformers_bars_and_leaves_them_as_they_were(tiny_dir, capsys):
    from transformers.utils import logging as hf_logging

    from memtok import MemoryCodec

    hf_logging.enable_progress_bar()
    MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    assert "Loading weights" not in capsys.readouterr().err and hf_logging.is_progress_bar_enabled()
