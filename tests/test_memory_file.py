"""The memory file: safetensors only, atomic writes, and refusal of the wrong file or model."""

import json

import pytest
import torch
from helpers import DEVICE, TEXTS
from safetensors.torch import save_file

from memtok import Memory, MemoryCodec, MemtokError, ModelMismatchError, NotAMemoryError
from memtok.format.header import sha256_text
from memtok.model.dtypes import DTYPES


@pytest.fixture(scope="module")
def memory(tiny_codec):
    return tiny_codec.encode(TEXTS[0], keep_text=True)


def test_file_round_trip_keeps_vectors_and_metadata(memory, tmp_path):
    path = memory.save(tmp_path / "m.safetensors")
    back = Memory.load(path)
    assert torch.equal(back.vectors, memory.vectors) and back.vectors.dtype == torch.float32
    assert back.metadata() == memory.metadata()
    assert back.text == TEXTS[0] and back.text_sha256 == sha256_text(TEXTS[0])


def test_file_is_plain_safetensors_with_a_json_header(memory, tmp_path):
    from safetensors import safe_open

    path = memory.save(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert list(f.keys()) == ["memory"]
        meta = f.metadata()
    assert meta["format"] == "memtok"
    header = json.loads(meta["memtok"])
    for key in ("format_version", "memtok_version", "model_name", "model_fingerprint", "template", "k", "n_tokens",
                "text_sha256", "recipe", "steps", "seconds", "final_loss", "min_margin", "exact"):
        assert key in header, key
    assert header["recipe"]["name"] == "memtok" and header["k"] == 1


def test_text_is_not_stored_unless_asked(tiny_codec, tmp_path):
    mem = tiny_codec.encode(TEXTS[1])
    raw = mem.save(tmp_path / "m.safetensors").read_bytes()
    assert TEXTS[1].encode() not in raw and mem.text is None


def test_a_failed_write_leaves_nothing_behind(memory, tmp_path, monkeypatch):
    import memtok.format.memory as mm

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mm, "save_file", broken)
    with pytest.raises(OSError):
        memory.save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype, saved, ratio", [("float16", torch.float16, 2), ("bfloat16", torch.bfloat16, 2),
                                                  ("int8", torch.int8, 4), ("int4", torch.uint8, 7),
                                                  ("ternary", torch.uint8, 16), ("binary", torch.uint8, 25)])
def test_lower_precision_memories_are_verified_as_saved(tiny_codec, memory, tmp_path, dtype, saved, ratio):
    from safetensors import safe_open

    mem = tiny_codec.encode(TEXTS[0], storage=dtype)
    path = mem.save(tmp_path / "h.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("memory").dtype == saved
    back = Memory.load(path)
    assert back.storage_dtype == dtype and torch.equal(back.vectors, mem.vectors)
    assert mem.exact and tiny_codec.decode(back) == TEXTS[0]
    assert back.nbytes <= memory.nbytes // ratio + 4 * mem.k


def test_files_that_are_not_memories_are_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not safetensors")
    with pytest.raises(NotAMemoryError):
        Memory.load(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"memory": torch.zeros(1, 4)}, str(plain))
    with pytest.raises(NotAMemoryError, match="not a memtok memory"):
        Memory.load(plain)


def test_decoding_with_another_model_is_refused(memory, other_tiny_dir, tiny_codec):
    other = MemoryCodec.from_pretrained(other_tiny_dir, device=DEVICE)
    assert other.lm.fingerprint != tiny_codec.lm.fingerprint
    with pytest.raises(ModelMismatchError, match="made with model"):
        other.decode(memory)


def test_fingerprint_survives_a_reload(tiny_dir, tiny_codec):
    assert MemoryCodec.from_pretrained(tiny_dir, device=DEVICE).lm.fingerprint == tiny_codec.lm.fingerprint


@pytest.mark.parametrize("dtype", ["int8", "int4", "ternary", "binary"])
def test_straight_through_rounds_forward_and_passes_gradients(dtype):
    from memtok.model.precision import Frame, model_inputs, stored_form, straight_through

    frame = Frame(torch.randn(16), torch.rand(16) + 0.5)
    v = torch.randn(2, 16, requires_grad=True)
    out = straight_through(v, dtype, frame)
    assert torch.equal(out.detach(), model_inputs(stored_form(v, dtype, frame), dtype, frame))
    assert not torch.equal(out.detach(), v.detach())
    (out * torch.arange(16.0)).sum().backward()
    assert torch.equal(v.grad, torch.arange(16.0).expand(2, 16))


@pytest.mark.parametrize("dtype, levels", [("int4", 15), ("ternary", 3), ("binary", 2)])
def test_framed_levels_pack_into_bytes_and_back_exactly(dtype, levels):
    """Each vector's levels and float16 scale are found again from the stored values alone."""
    from memtok.model.precision import Frame, nbytes, pack, stored_form, unpack

    frame = Frame(torch.zeros(577), torch.ones(577))
    stored = stored_form(torch.randn(3, 577) * torch.tensor([[0.01], [1.0], [300.0]]), dtype, frame)
    saved = pack(stored, dtype)
    assert torch.equal(unpack(saved, dtype, 577), stored)
    assert len((stored / saved["scale"].float()[:, None]).unique()) == levels
    assert sum(t.numel() * t.element_size() for t in saved.values()) == nbytes(3, 577, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_storage_dtype_saves_what_its_entry_says(dtype, tmp_path):
    """The registry is the one description of a dtype: what pack writes is what the header check
    expects, its byte count is nbytes', and a framed dtype can be planned compact."""
    from safetensors import safe_open

    from memtok.model.dtypes import STORAGE
    from memtok.model.precision import Frame, pack, stored_form

    spec, frame = STORAGE[dtype], Frame(torch.zeros(577), torch.ones(577))
    save_file(pack(stored_form(torch.randn(3, 577), dtype, frame), dtype), str(tmp_path / "v.safetensors"))
    with safe_open(str(tmp_path / "v.safetensors"), framework="pt") as f:
        saved = {name: (f.get_slice(name).get_dtype(), f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        size = sum(f.get_tensor(name).numel() * f.get_tensor(name).element_size() for name in f.keys())  # noqa: SIM118
    assert saved["memory"] == (spec.saved_as, [3, spec.width(577)])
    assert saved.get("scale") == ((spec.scale, [3]) if spec.scale else None)
    assert size == spec.nbytes(3, 577)
    assert (spec.compact_tokens is not None) == spec.framed


def _resave_with_header(memory, path, header: dict):
    save_file({"memory": memory.vectors.contiguous()}, str(path), {"format": "memtok", "memtok": json.dumps(header)})
    return path


def test_a_version_1_file_without_segments_still_loads_and_decodes(tiny_codec, memory, tmp_path):
    header = {**memory.metadata(), "format_version": 1}
    del header["segments"]
    old = Memory.load(_resave_with_header(memory, tmp_path / "v1.safetensors", header))
    assert old.segments == [] and tiny_codec.decode(old) == TEXTS[0]


def test_segments_that_do_not_add_up_are_refused(memory, tmp_path):
    bad = [{"k": 2, "tokens": memory.n_tokens, "steps": 1}]  # two vectors claimed, one stored
    with pytest.raises(NotAMemoryError, match="segments do not add up"):
        Memory.load(_resave_with_header(memory, tmp_path / "bad.safetensors", {**memory.metadata(), "segments": bad}))


def test_compact_memories_are_int4_levels_that_decode_from_the_file(tiny_codec, memory, tmp_path):
    mem = tiny_codec.encode(TEXTS[0], compact=True)
    assert mem.storage_dtype == "int4" and mem.exact
    back = Memory.load(mem.save(tmp_path / "c.safetensors"))
    assert torch.equal(back.vectors, mem.vectors) and tiny_codec.decode(back) == TEXTS[0]
    # 64 float32 numbers (256 bytes) against 32 bytes of levels and a 2-byte scale
    assert back.nbytes == mem.k * (64 // 2 + 2) and memory.nbytes == 4 * 64 * memory.k


def test_compact_refuses_a_dtype_that_is_not_low_bit():
    from memtok import EncodeConfig

    assert EncodeConfig(compact=True).storage == "int4" and EncodeConfig(compact=True, storage="binary").storage == "binary"
    with pytest.raises(MemtokError, match="low-bit"):
        EncodeConfig(compact=True, storage="float16")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int8"])
def test_a_step_rounds_on_the_vectors_own_device_to_the_bits_the_file_holds(dtype, monkeypatch):
    """Every step rounds every text's vectors to the storage dtype: on a GPU a trip through host
    memory would stop it each time. The rounding made on the device is what saving then loading gives,
    bit for bit (the file's values are what the optimiser saw)."""
    from memtok.model.precision import pack, stored_form, unpack

    v = torch.randn(4, 577, generator=torch.Generator().manual_seed(0)) * 3
    saved = unpack(pack(v, dtype))
    monkeypatch.setattr(torch.Tensor, "cpu", lambda *a, **k: pytest.fail("rounding went through host memory"))
    assert torch.equal(stored_form(v, dtype, None), saved)
