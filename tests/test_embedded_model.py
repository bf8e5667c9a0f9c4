"""End to end on the embedded SmolLM2-135M: the default a user gets, through the real command."""

import json
import subprocess
import sys

import pytest

from memtok import Memory

pytestmark = pytest.mark.slow

ENGLISH = "Memory tokens let a frozen language model recall a whole sentence from one vector.\n"
SPANISH = "La facultad ofrece cursos de grado y posgrado en ingeniería."


def memtok(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtok", *args], input=stdin, capture_output=True, check=False, timeout=600)


def test_sentence_round_trips_exactly_through_the_cli(tmp_path):
    mem = tmp_path / "m.safetensors"
    enc = memtok("encode", "-o", str(mem), stdin=ENGLISH.encode())
    assert enc.returncode == 0, enc.stderr.decode()[-500:]
    dec = memtok("decode", str(mem))
    assert dec.returncode == 0 and dec.stdout == ENGLISH.encode()
    made = Memory.load(mem)  # what `memtok info` shows, read without a model
    assert made.n_tokens == 16 and made.exact and len(made.segments) <= 1


# an English and a Spanish sentence, 36 tokens: a planned segment holds 32, so the plan cuts at the
# sentence end (16 and 20 tokens), and the two segments are optimised side by side
PARAGRAPH = "Memory tokens let a frozen language model recall a whole sentence from just one vector. " + SPANISH + "\n"


def test_a_paragraph_is_cut_as_planned_and_comes_back_exact(tmp_path):
    """The default on a text longer than one planned segment: cut at the sentence end into segments
    of at most 32 tokens, each exact, and the whole decodes back, in both languages."""
    mem = tmp_path / "p.safetensors"
    enc = memtok("encode", "-o", str(mem), "--json", stdin=PARAGRAPH.encode())
    assert enc.returncode == 0, enc.stderr.decode()[-500:]
    assert "plan: " in enc.stderr.decode() and json.loads(enc.stdout)["exact"] is True
    segments = Memory.load(mem).segments
    assert [s["tokens"] for s in segments] == [16, 20]
    dec = memtok("decode", str(mem))
    assert dec.returncode == 0 and dec.stdout == PARAGRAPH.encode()
