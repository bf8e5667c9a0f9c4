"""End to end on the embedded SmolLM2-135M: the default a user gets, through the real command."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ENGLISH = "Memory tokens let a frozen language model recall a whole sentence from one vector.\n"
SPANISH = "La facultad ofrece cursos de grado y posgrado en ingeniería, abiertos a todo público."


def memtok(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtok", *args], input=stdin, capture_output=True, timeout=600)


@pytest.mark.parametrize("text", [ENGLISH, SPANISH], ids=["english", "spanish"])
def test_sentence_round_trips_exactly_through_the_cli(text, tmp_path):
    from memtok.models import load

    assert 15 <= len(load(None, "cpu").tokenize(text)) <= 25  # the "20-token sentence"
    mem = tmp_path / "m.safetensors"
    enc = memtok("encode", "-o", str(mem), stdin=text.encode())
    assert enc.returncode == 0, enc.stderr.decode()[-500:]
    dec = memtok("decode", str(mem))
    assert dec.returncode == 0 and dec.stdout == text.encode()
