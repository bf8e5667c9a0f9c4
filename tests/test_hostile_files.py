"""Memory files from anywhere: every malformed header or tensor is refused with one line (exit 2),
checked in one place when the file is loaded; whatever loads decodes to its text or is refused."""

import json
import math

import pytest
import torch
from helpers import TEXTS, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from memtok import Memory, MemtokError, NotAMemoryError
from memtok.model.precision import pack

TEXT = TEXTS[3]


@pytest.fixture(scope="module")
def good(tiny_codec):
    mem = tiny_codec.encode(TEXT)
    assert mem.exact
    return mem


def write(path, header, tensors):
    meta = {"format": "memtok", "memtok": header if isinstance(header, str) else json.dumps(header)}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), meta)
    return path


def crafted(good) -> dict[str, tuple[object, dict]]:
    """Each case seen break main: (header, tensors)."""
    h, v = good.metadata(), good.vectors
    d = v.shape[1]
    return {
        "segments not objects": ({**h, "segments": [1, 2]}, {"memory": v}),
        "version as a string": ({**h, "format_version": "3"}, {"memory": v}),
        "header a JSON list": ([h], {"memory": v}),
        "recipe null": ({**h, "recipe": None}, {"memory": v}),
        "margin a string": ({**h, "min_margin": "x"}, {"memory": v}),
        "NaN vectors": (h, {"memory": torch.full_like(v, math.nan)}),
        "K = 200000": ({**h, "k": 200000}, {"memory": v}),
        "segment with k = -1": ({**h, "k": 1, "segments": [{"k": -1, "tokens": h["n_tokens"], "steps": 1},
                                                           {"k": 2, "tokens": 0, "steps": 1}]}, {"memory": v}),
        "int8 header over float32": ({**h, "storage_dtype": "int8"}, {"memory": v, "scale": torch.ones(1)}),
        "ANSI in the model name": ({**h, "model_name": "\x1b[31mred\x1b[0m"}, {"memory": v}),
        "shape against the header": ({**h, "hidden_size": d + 1}, {"memory": v}),
        "text not its sha256": ({**h, "text": "another text"}, {"memory": v}),
        "not JSON": ("{not json", {"memory": v}),
        "zero scale": ({**h, "storage_dtype": "int8"}, {**pack(v, "int8"), "scale": torch.zeros(1)}),
        # framed levels: 15 x 15 = 225 combinations a byte, so 255 is no int4 memory's
        "int4 byte beyond its levels": ({**h, "storage_dtype": "int4"},
                                        {"memory": torch.full((1, -(-d // 2)), 255, dtype=torch.uint8),
                                         "scale": torch.ones(1, dtype=torch.float16)}),
        "int4 levels unpacked": ({**h, "storage_dtype": "int4"},
                                 {"memory": torch.zeros(1, d, dtype=torch.uint8), "scale": torch.ones(1, dtype=torch.float16)}),
        "int4 float32 scale": ({**h, "storage_dtype": "int4"},
                               {"memory": torch.zeros(1, -(-d // 2), dtype=torch.uint8), "scale": torch.ones(1)}),
        "sizes not counts": ({**h, "text_sizes": {"utf8": -1, "gzip": 1, "xz": 1, "zstd": 1}}, {"memory": v}),
        "bound a string": ({**h, "entropy_bits": "many"}, {"memory": v}),
        # a source is turned into a path to look for: nothing but the three pinned forms
        "source a path": ({**h, "model_source": "sha256:../../etc/passwd"}, {"memory": v}),
    }


CASES = ["segments not objects", "version as a string", "header a JSON list", "recipe null", "margin a string",
         "NaN vectors", "K = 200000", "segment with k = -1", "int8 header over float32", "ANSI in the model name",
         "shape against the header", "text not its sha256", "not JSON", "zero scale", "int4 byte beyond its levels",
         "int4 levels unpacked", "int4 float32 scale", "sizes not counts", "bound a string", "source a path"]


@pytest.mark.parametrize("case", CASES)
def test_crafted_files_are_refused_with_one_line(case, good, tmp_path, capsysbinary):
    header, tensors = crafted(good)[case]
    path = write(tmp_path / "m.safetensors", header, tensors)
    with pytest.raises(NotAMemoryError):
        Memory.load(path)
    for command in ("info", "decode"):
        code, stdout, err = run([command, str(path)], capsysbinary)
        assert code == 2 and stdout == b"", (case, command, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("memtok: error: ") and "\x1b" not in err, (case, err)


def test_a_memory_of_another_hidden_size_is_refused_before_the_model_runs(good, tiny_codec, tmp_path, capsysbinary):
    """Hidden size 7 is a consistent file: only the model can tell that it does not fit."""
    h = {**good.metadata(), "hidden_size": 7}
    path = write(tmp_path / "m.safetensors", h, {"memory": torch.zeros(1, 7)})
    mem = Memory.load(path)
    with pytest.raises(MemtokError, match="7 dimensions"):
        tiny_codec.decode(mem)
    code, _, err = run(["decode", str(path)], capsysbinary)
    assert code == 2 and "7 dimensions" in err and len(err.strip().splitlines()) == 1


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 300_000) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=6)


@st.composite
def mutations(draw, good):
    header, vectors = good.metadata(), good.vectors.clone()
    tensors = {"memory": vectors}
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["set", "delete", "tensor", "dtype", "shape", "replace"]))
        if what == "set":
            header[draw(st.sampled_from(sorted(header) + ["extra"]))] = draw(JSON)
        elif what == "delete" and header:
            header.pop(draw(st.sampled_from(sorted(header))))
        elif what == "tensor":
            m = tensors["memory"].clone()
            if m.numel() and m.is_floating_point():
                m.view(-1)[draw(st.integers(0, m.numel() - 1))] = draw(st.floats(width=16))
            tensors["memory"] = m
        elif what == "dtype":
            dtype = draw(st.sampled_from(["float16", "bfloat16", "int8"]))
            tensors = pack(tensors["memory"].float(), dtype)
        elif what == "shape":
            rows = draw(st.integers(0, 3))
            tensors["memory"] = tensors["memory"][:1].expand(rows, -1).clone() if rows else tensors["memory"][:, :3]
        else:
            return draw(JSON), tensors
    return header, tensors


def test_any_mutation_is_refused_cleanly_or_decodes_its_text(good, tiny_codec, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mutations")

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutations(good))
    def check(mutation):
        header, tensors = mutation
        path = write(folder / "m.safetensors", header, tensors)
        try:
            mem = Memory.load(path)
        except MemtokError:
            return  # refused cleanly (a subclass: not a memory, newer format, ...)
        try:
            assert tiny_codec.decode(mem) == TEXT
        except MemtokError:
            pass  # refused at decoding: another model, does not fit it, or not its text

    check()
