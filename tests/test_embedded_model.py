"""End to end on the embedded SmolLM2-135M: the default a user gets, through the real command."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ENGLISH = "Memory tokens let a frozen language model recall a whole sentence from one vector.\n"
SPANISH = "La facultad ofrece cursos de grado y posgrado en ingeniería."


def memtok(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtok", *args], input=stdin, capture_output=True, check=False, timeout=600)


@pytest.mark.parametrize("text, n_tokens", [(ENGLISH, 16), (SPANISH, 19)], ids=["english", "spanish"])
def test_sentence_round_trips_exactly_through_the_cli(text, n_tokens, tmp_path):
    mem = tmp_path / "m.safetensors"
    enc = memtok("encode", "-o", str(mem), stdin=text.encode())
    assert enc.returncode == 0, enc.stderr.decode()[-500:]
    dec = memtok("decode", str(mem))
    assert dec.returncode == 0 and dec.stdout == text.encode()
    info = memtok("info", str(mem), "--json")
    assert json.loads(info.stdout)["n_tokens"] == n_tokens and json.loads(info.stdout)["exact"] is True


PARAGRAPH = ("Memory tokens turn a text into a few input vectors for a frozen language model. Greedy "
             "decoding from those vectors alone gives the text back, byte for byte. A long text is cut "
             "into segments at sentence ends and spaces, and each segment gets its own vector, so a memory "
             "of any length comes back exact.\n")


def test_a_paragraph_is_cut_as_planned_and_comes_back_exact(tmp_path):
    """The default on a text longer than one planned segment: cut into segments of at most 32
    tokens, each exact, and the whole decodes back."""
    mem = tmp_path / "p.safetensors"
    enc = memtok("encode", "-o", str(mem), "--json", stdin=PARAGRAPH.encode())
    assert enc.returncode == 0, enc.stderr.decode()[-500:]
    assert "plan: " in enc.stderr.decode() and json.loads(enc.stdout)["exact"] is True
    info = json.loads(memtok("info", str(mem), "--json").stdout)
    assert len(info["segments"]) >= 3 and all(s["tokens"] <= 32 for s in info["segments"])
    dec = memtok("decode", str(mem))
    assert dec.returncode == 0 and dec.stdout == PARAGRAPH.encode()
