"""Hub ids go to `from_pretrained`: a model in the Hugging Face cache loads by its id with the hub
switched off, and one that is nowhere says so in one line."""

import os
import shutil
import subprocess
import sys

import pytest
from helpers import TEXTS

from memtok import Memory

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache(tiny_dir, home) -> str:
    """The tiny model laid out as huggingface_hub caches a download of `memtok-test/tiny`."""
    repo = home / "hub" / "models--memtok-test--tiny"
    shutil.copytree(tiny_dir, repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    return "memtok-test/tiny"


def memtok(args, home, cwd):
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "memtok", *args], capture_output=True, env=env, cwd=cwd,
                          check=False, timeout=300)


@pytest.mark.slow  # a subprocess
def test_a_hub_id_loads_from_the_cache_offline_and_keeps_its_commit(tiny_dir, other_tiny_dir, tmp_path):
    home = tmp_path / "hf"
    hub_id = hub_cache(tiny_dir, home)
    mem = tmp_path / "m.safetensors"
    # run elsewhere than the model's folder: the id must not be taken for a path
    enc = memtok(["encode", TEXTS[0], "--model", hub_id, "-o", str(mem)], home, tmp_path)
    assert enc.returncode == 0, enc.stderr.decode()[-800:]
    made = Memory.load(mem)  # what `memtok info` shows
    assert made.model_name == "memtok-test/tiny" and made.model_source == f"hub:{hub_id}@{SNAPSHOT}"
    dec = memtok(["decode", str(mem)], home, tmp_path)  # loads the model the memory names: the same id
    assert dec.returncode == 0 and dec.stdout == TEXTS[0].encode(), dec.stderr.decode()[-800:]
    newer = "f" * 40  # the repository's main branch now holds other weights
    repo = home / "hub" / "models--memtok-test--tiny"
    shutil.copytree(other_tiny_dir, repo / "snapshots" / newer)
    (repo / "refs" / "main").write_text(newer)
    dec = memtok(["decode", str(mem)], home, tmp_path)  # found at the commit it was made with
    assert dec.returncode == 0 and dec.stdout == TEXTS[0].encode(), dec.stderr.decode()[-800:]
    latest = memtok(["decode", str(mem), "--model", hub_id], home, tmp_path)
    assert latest.returncode == 2 and b"fingerprint" in latest.stderr


@pytest.mark.slow  # a subprocess
def test_a_hub_id_that_is_nowhere_says_where_it_looked(tmp_path):
    home = tmp_path / "hf"
    p = memtok(["encode", "hello", "--model", "HuggingFaceTB/SmolLM2-360M"], home, tmp_path)
    err = p.stderr.decode()
    assert p.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "neither a local folder nor in the Hugging Face cache" in err and "HF_HUB_OFFLINE" in err
    assert "model directory not found" not in err
