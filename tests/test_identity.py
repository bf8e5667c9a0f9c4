"""A memory finds its model again: a local model by content wherever it has moved, never another
model that happens to have its name; a hub model at the commit it was made with."""

import shutil

import pytest
from helpers import TEXTS, run

from memtok import Memory, MemtokError
from memtok.model.identity import describe, file_sha256, find_model

TEXT = TEXTS[2]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MEMTOK_MODEL_PATH", raising=False)


def test_a_gguf_file_is_found_by_name_and_content(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.gguf").write_bytes(b"the model")
    (tmp_path / "b" / "m.gguf").write_bytes(b"another model, same name")
    source = describe("m.gguf", str(tmp_path / "a"), "m.gguf", None)
    assert source == f"sha256:{file_sha256(tmp_path / 'a' / 'm.gguf')}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MemtokError, match="MEMTOK_MODEL_PATH"):
        find_model("m.gguf", source, [tmp_path / "b"])  # a namesake is not the model
    monkeypatch.setenv("MEMTOK_MODEL_PATH", f"{tmp_path / 'b'}:{tmp_path / 'a'}")
    assert find_model("m.gguf", source) == str(tmp_path / "a" / "m.gguf")


def test_a_changed_file_is_hashed_again(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"one")
    first = file_sha256(f)
    f.write_bytes(b"two, longer")
    assert file_sha256(f) != first


def test_sources_name_hub_snapshots_and_packages(tmp_path):
    snapshot = tmp_path / "hub" / "models--owner--name" / "snapshots" / ("ab" * 20)
    (snapshot).mkdir(parents=True)
    assert describe(str(snapshot), str(snapshot), None, None) == f"hub:owner/name@{'ab' * 20}"
    assert describe(None, "anywhere", None, None) == "package:smollm2-135m"
    assert find_model("owner/name", f"hub:owner/name@{'c' * 40}") == f"owner/name@{'c' * 40}"


def test_a_moved_model_folder_is_found_and_a_namesake_refused(tiny_dir, other_tiny_dir, tmp_path, capsysbinary,
                                                              monkeypatch):
    shutil.copytree(tiny_dir, tmp_path / "made" / "tiny")
    mem = tmp_path / "m.safetensors"
    code, _, err = run(["encode", TEXT, "--model", str(tmp_path / "made" / "tiny"), "-o", str(mem)], capsysbinary)
    assert code == 0, err
    assert Memory.load(mem).model_source.startswith("sha256:")
    shutil.move(tmp_path / "made" / "tiny", tmp_path / "moved" / "tiny")
    shutil.copytree(other_tiny_dir, tmp_path / "other" / "tiny")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMTOK_MODEL_PATH", str(tmp_path / "other"))
    code, out, err = run(["decode", str(mem)], capsysbinary)
    assert code == 2 and "is not here" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("MEMTOK_MODEL_PATH", f"{tmp_path / 'other'}:{tmp_path / 'moved'}")
    code, out, err = run(["decode", str(mem)], capsysbinary)
    assert code == 0 and out == TEXT.encode(), err
