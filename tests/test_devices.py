"""What a GPU user's run depends on, shown on a CPU: each torchrun rank on a GPU of its own, a long
wait at barriers, weights loaded straight onto their GPU, pinned matmul numerics, 4-bit refused
where it cannot work, and a pass that runs out of memory halving the batch instead of ending the run."""

import logging
import re
from datetime import timedelta

import pytest
import torch
from helpers import TEXTS, bits_on_cpu, run

import memtok.encode.batch
import memtok.encode.optimise
from memtok import MemoryCodec, MemtokError
from memtok.runs import encode_corpus
from memtok.runs.encode_corpus import rank_device


@pytest.fixture
def four_gpus(monkeypatch):
    """A node with four GPUs, as torch would report it; `set_device` calls are recorded."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "4")
    return chosen


def test_each_torchrun_rank_takes_a_gpu_of_its_own_and_makes_it_current(four_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert rank_device(None) == rank_device("cuda") == "cuda:2" and four_gpus == [2, 2]
    assert rank_device("cpu") == "cpu" and rank_device("cuda:3") == "cuda:3"  # as asked
    monkeypatch.setenv("LOCAL_RANK", "4")
    with pytest.raises(MemtokError, match="no GPU of its own"):
        rank_device(None)


def test_auto_is_refused_when_torchrun_started_several_processes(four_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(MemtokError, match="each of the processes torchrun started takes a GPU of its own"):
        rank_device("auto")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert rank_device("auto") == "auto"  # one process may spread its model


def test_the_ranks_wait_at_barriers_for_hours_not_torchs_half_hour(monkeypatch):
    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(encode_corpus, "watch_launcher", lambda: None)
    monkeypatch.setattr(encode_corpus.dist, "is_initialized", lambda: "backend" in joined)
    monkeypatch.setattr(encode_corpus.dist, "init_process_group", lambda backend, **kw: joined.update(backend=backend,
                                                                                                       **kw))
    monkeypatch.setattr(encode_corpus.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(encode_corpus.dist, "get_world_size", lambda: 2)
    assert encode_corpus.distributed() == (1, 2)
    assert joined["backend"] == "gloo" and joined["timeout"] >= timedelta(days=1)


def test_nf4_is_refused_on_a_cpu_with_one_line_saying_why(tiny_dir, capsysbinary):
    code, out, err = run(["encode", TEXTS[0], "--model", tiny_dir, "--model-dtype", "nf4", "--device", "cpu"],
                         capsysbinary)
    assert code == 2 and out == b"" and err.count("\n") == 1
    assert "nf4 needs a CUDA GPU" in err and "no gradient" in err


def test_loading_pins_the_matmul_numerics_a_memory_is_verified_in_and_says_what_it_changed(tiny_dir, caplog):
    matmul = torch.backends.cuda.matmul
    for flag in ("allow_tf32", "allow_bf16_reduced_precision_reduction", "allow_fp16_reduced_precision_reduction"):
        setattr(matmul, flag, True)  # what another library in the process may have set (loading resets them)
    with caplog.at_level("INFO", logger="memtok"):
        MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    assert not (matmul.allow_tf32 or matmul.allow_bf16_reduced_precision_reduction
                or matmul.allow_fp16_reduced_precision_reduction)
    assert torch.get_float32_matmul_precision() == "highest"
    said = {r.levelname: r.getMessage() for r in caplog.records if r.name == "memtok"}
    assert "TF32 matmul True -> False" in said["WARNING"]  # the caller's own setting
    assert "bf16 reduced-precision reductions True -> False" in said["INFO"]  # torch's default


def test_weights_load_straight_onto_the_gpu_they_run_on(tiny_dir, monkeypatch, four_gpus):
    """Not through host memory (eight ranks would each hold a full fp32 copy there), and never moved after."""
    from transformers import AutoModelForCausalLM

    real, asked = AutoModelForCausalLM.from_pretrained, {}

    def loaded(path, **kwargs):
        asked.update(kwargs)
        return real(path, dtype=kwargs["dtype"])  # on the CPU: this machine has no GPU to put it on

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", loaded)
    monkeypatch.setattr(torch.nn.Module, "to", lambda *a, **k: pytest.fail("a model placed as it loads is moved"))
    MemoryCodec.from_pretrained(tiny_dir, device="cuda:1")
    assert asked["device_map"] == {"": "cuda:1"}


@bits_on_cpu
def test_running_out_of_memory_halves_the_batch_and_goes_on(tiny_codec, monkeypatch, caplog):
    """A pass of more than two texts runs out of memory (forward or backward, as a GPU would): the
    batch halves, the texts set aside keep their state, and every text ends as it would have, with
    the same steps and its restarts at the same steps (a pass whose backward failed is not
    counted against a text's patience)."""
    options = dict(k=1, batch_size=6, max_steps=300, recipe="memtok:restart_after=2")
    plain = tiny_codec.encode(TEXTS[:6], **options)
    assert any(s.get("restarts") for m in plain for s in m.segments)  # the timing of restarts is tested
    forward, backward, sizes = memtok.encode.batch.batch_pass, torch.Tensor.backward, []

    def small_forward(lm, slots, *args):
        sizes.append(len(slots))
        if len(slots) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(lm, slots, *args)

    def small_backward(loss, *args, **kwargs):  # the pass's summed loss, of as many texts as its forward
        if sizes[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        backward(loss, *args, **kwargs)

    monkeypatch.setattr(memtok.encode.batch, "batch_pass", small_forward)
    monkeypatch.setattr(torch.Tensor, "backward", small_backward)
    with caplog.at_level(logging.WARNING, logger="memtok.encode.batch"):
        backed_off = tiny_codec.encode(TEXTS[:6], **options)
    assert [m.segments for m in backed_off] == [m.segments for m in plain] and all(m.exact for m in backed_off)
    assert sizes[0] == 6 and max(sizes[1:]) <= 3 and max(sizes[-10:]) <= 1  # 6 -> 3 (forward) -> 1 (backward)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "out of memory with 6 texts in a pass", "out of memory with 3 texts in a pass"]
    monkeypatch.setattr(memtok.encode.batch, "batch_pass", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    with pytest.raises(MemtokError, match="does not fit in the memory of cpu: lower max_batch_tokens") as refused:
        tiny_codec.encode(TEXTS[0], k=1)  # a lone text that does not fit: one line saying what would
    assert "\n" not in str(refused.value)


def test_a_text_left_alone_after_a_shared_backward_ran_out_goes_on_alone_and_each_step_is_told_once(
        tiny_codec, monkeypatch):
    """A pass of two texts where one is done and the other's backward runs out of memory: the
    activations of both were held, so the other is not refused as too large but goes on alone; the
    failed pass is told to `on_step` for the finished text only, and done again for the other."""
    from memtok.encode.slot import TextSlot

    options = dict(k=1, batch_size=2, max_steps=300)
    plain = tiny_codec.encode(TEXTS[:2], **options)
    assert plain[0].steps != plain[1].steps  # one finishes first
    forward, backward, settle = memtok.encode.batch.batch_pass, torch.Tensor.backward, TextSlot.settle
    passes, failed, told = [], [], []

    def counted_forward(lm, slots, *args):
        passes.append({"texts": len(slots), "done": False})
        return forward(lm, slots, *args)

    def noted_settle(slot, judged):
        result = settle(slot, judged)
        passes[-1]["done"] |= result is not None
        return result

    def shared_backward(loss, *args, **kwargs):
        if passes[-1] == {"texts": 2, "done": True} and not failed:
            failed.append(len(passes))
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        backward(loss, *args, **kwargs)

    monkeypatch.setattr(memtok.encode.batch, "batch_pass", counted_forward)
    monkeypatch.setattr(TextSlot, "settle", noted_settle)
    monkeypatch.setattr(torch.Tensor, "backward", shared_backward)
    mems = tiny_codec.encode(TEXTS[:2], on_step=lambda info: told.extend((repr(t.key), t.restarts, t.step) for t in info.texts),
                             **options)
    assert failed and all(m.exact for m in mems) and [m.steps for m in mems] == [m.steps for m in plain]
    assert len(told) == len(set(told)) == sum(m.steps + 1 for m in mems)  # every pass of every text, once


@bits_on_cpu
def test_running_out_of_memory_making_a_text_or_verifying_goes_on_with_fewer(tiny_codec, monkeypatch, caplog):
    """Memory can also run out while a text's vectors are made (a learned start's pass) and in greedy
    verification (its KV cache): the batch stops growing, verification goes on in halves, and every
    text ends as it would have."""
    import dataclasses

    settings = tiny_codec.resolve(k=1, batch_size=4, max_steps=300)
    plain = tiny_codec.encode(TEXTS[:4], settings)
    made, verify, batches, calls = settings.make_vectors, memtok.encode.batch.verify, [], []

    def third_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return made(*args, **kwargs)

    def one_at_a_time(lm, layout, inputs, targets):
        batches.append(len(inputs))
        if len(inputs) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return verify(lm, layout, inputs, targets)

    monkeypatch.setattr(memtok.encode.batch, "verify", one_at_a_time)
    with caplog.at_level(logging.WARNING, logger="memtok.encode.batch"):
        again = tiny_codec.encode(TEXTS[:4], dataclasses.replace(settings, make_vectors=third_fails))
    assert [m.steps for m in again] == [m.steps for m in plain] and all(m.exact for m in again)
    assert 1 in batches and any(b > 1 for b in batches)
    assert caplog.records[0].getMessage().startswith("out of memory making a text's vectors beside 2 others")


def test_a_head_on_another_gpu_than_the_decoder_gets_its_targets_there():
    """`--device auto` over two GPUs may put the output head on the second: its logits come back
    there (accelerate moves a submodule's input, not its output), and the loss, argmax and margin
    must be made there and handed back on the decoder's device. Fake tensors stand for two GPUs:
    they carry a device and refuse to mix them, as CUDA does, on a machine without one."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from memtok.model.forward import judge

    with FakeTensorMode(allow_non_fake_inputs=True):
        weight = torch.randn(32, 8, device="cuda:1")
        states = torch.randn(5, 8, device="cuda:0")  # the decoder's, on the first GPU
        targets = torch.randint(0, 32, (5,), device="cuda:0")
        # the head as accelerate dispatches it: its input moved to its own device, its output left there
        ce, right, margin = judge(lambda h: h.to("cuda:1") @ weight.T, states, targets)
        assert {ce.device, right.device, margin.device} == {torch.device("cuda:0")}


def test_a_step_of_a_model_spread_over_two_devices_meets_each_tensor_where_it_is():
    """`--device auto` as accelerate spreads a model: the embeddings (and so the inputs) on the first
    GPU, the last layer's states (and the head) on the second, and a submodule's output left where
    it was made. Every tensor a step makes must go where it is used, and the step's results come
    back on one device. FakeTensorMode's CUDA devices cannot pad or index on a torch without CUDA,
    so here the data-less meta device stands for the first GPU and the CPU for the second: a
    tensor made on the inputs' device and used with the states fails, as it would between GPUs."""
    from types import SimpleNamespace

    from memtok.encode.batch import batch_pass
    from memtok.settings.recipes import MEMTOK

    d, vocab, first, second = 8, 32, torch.device("meta"), torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    mix, head_weight = torch.randn(d, d, generator=gen), torch.randn(vocab, d, generator=gen)

    def decoder(inputs_embeds, attention_mask, use_cache):  # its output on the last layer's device
        states = torch.randn(*inputs_embeds.shape, generator=gen, device=second) @ mix
        return SimpleNamespace(last_hidden_state=states.requires_grad_(True))

    lm = SimpleNamespace(device=first, split_head=(decoder, lambda h: h.to(second) @ head_weight.T))

    def slot(ids: list[int]) -> SimpleNamespace:
        targets = torch.empty(len(ids), dtype=torch.long, device=first)
        return SimpleNamespace(job=SimpleNamespace(targets=ids), targets=targets, span=len(ids), first_target=1,
                               recipe=MEMTOK, input_vectors=lambda: torch.zeros(1, d, device=first),
                               inputs=lambda v, n=len(ids): torch.zeros(1 + n, d, device=first))

    judged, per_text = batch_pass(lm, [slot([3, 5, 7]), slot([2, 4])])
    assert len(judged) == 2 and per_text.device == second and all(0 <= j.accuracy <= 1 for j in judged)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_16_bit_model_verifies_and_decodes_every_memory_alone(dtype, tiny_dir, monkeypatch):
    """In 16 bits a batch moves margins far beyond `SAFE_MARGIN` (0.75 logits in bfloat16 between
    batch 1 and 32, docs/trust.md), so no batched verdict or decoding stands: every row alone."""
    import memtok.decode.greedy

    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu", dtype=dtype)
    rows, batch = [], memtok.decode.greedy.greedy_batch
    monkeypatch.setattr(memtok.decode.greedy, "greedy_batch", lambda lm, layout, vectors, *a: rows.append(len(vectors))
                        or batch(lm, layout, vectors, *a))
    mems = codec.encode(TEXTS[:4], k=1, batch_size=4, max_steps=300)
    assert codec.decode(mems, check=False) and rows and set(rows) == {1}


def test_a_soft_capped_model_gets_its_logits_whole_in_16_bits():
    """Gemma 2 caps its logits (30 tanh(x / 30)); in bfloat16 the cap moves small logits by less than
    any tolerance of 16-bit rounding, so only the config can say the head is not the last step."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from memtok.model.model import FrozenLM

    tok = __import__("helpers").build_tokenizer()
    config = Gemma2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=30.0)
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).to(torch.bfloat16).requires_grad_(False).eval()
    assert FrozenLM(model, tok, "tiny gemma2").split_head is None
    uncapped = Gemma2ForCausalLM(Gemma2Config(**{**config.to_dict(), "final_logit_softcapping": None}))
    assert FrozenLM(uncapped.requires_grad_(False).eval(), tok, "tiny gemma2, no cap").split_head is not None


def test_weights_offloaded_off_every_device_are_refused_with_one_line(tiny_dir):
    """accelerate's `auto` puts what does not fit the GPUs on the meta device, to be brought in pass by
    pass: memtok could neither fingerprint it nor optimise through it at speed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memtok.model.identity import fingerprint

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.lm_head.weight, device="meta"))
    with pytest.raises(MemtokError, match="did not fit the GPUs and were offloaded") as refused:
        fingerprint(model, AutoTokenizer.from_pretrained(tiny_dir))
    assert "\n" not in str(refused.value)


def test_a_step_reads_from_the_device_once(tiny_codec, monkeypatch):
    """Each read of a GPU tensor on the host waits for the GPU: memtok's step makes one, for every
    text's standing together (where the targets sit is known on the host, not read from a mask). The
    model's own reads (transformers checks its attention mask for padding) are not counted."""
    import sys

    package = str(__import__("pathlib").Path(__import__("memtok").__file__).parent)
    from memtok import EncodeConfig
    from memtok.encode.jobs import Job
    from memtok.encode.optimise import optimise
    from memtok.encode.resolved import resolve

    lm = tiny_codec.lm
    resolved = resolve(lm, EncodeConfig(k=1, recipe="memtok", max_steps=5, batch_size=2))
    jobs = [Job(i, tiny_codec.target_ids(t), 1) for i, t in enumerate(TEXTS[:2])]
    reads, passes = [], []
    for name in ("tolist", "item", "nonzero", "__bool__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, _name=name, **k:
                            (sys._getframe(1).f_code.co_filename.startswith(package) and reads.append(_name))
                            or _real(self, *a, **k))
    results = list(optimise(lm, resolved, jobs, on_step=passes.append))
    monkeypatch.undo()
    assert len(results) == 2 and len(passes) >= 5 and reads == ["tolist"] * len(passes)


def test_a_loss_that_overflows_starts_the_text_again_instead_of_poisoning_it(tiny_codec, monkeypatch):
    """A float16 model can overflow to an infinite or NaN loss; its gradient would put NaN into the
    text's vectors and moments for good. The text starts again (a new factorisation from the mean),
    and the others in the batch are untouched."""
    forward, hit = memtok.encode.batch.batch_pass, []

    def overflowing(lm, slots, *args):
        judged, per_text = forward(lm, slots, *args)
        if not hit and slots[0].steps == 3:  # once, for the first text, after three updates
            hit.append(slots[0].job.key)
            poison = torch.ones_like(per_text)
            poison[0] = float("nan")
            judged[0] = judged[0]._replace(loss=float("nan"))
            per_text = per_text * poison
        return judged, per_text

    monkeypatch.setattr(memtok.encode.batch, "batch_pass", overflowing)
    from memtok import EncodeConfig

    targets = [tiny_codec.target_ids(t) for t in TEXTS[:2]]
    results = {i: (r, exact) for i, r, exact in tiny_codec.encode_ids(targets, EncodeConfig(k=1, batch_size=2,
                                                                                         max_steps=300))}
    assert hit and all(exact and torch.isfinite(r.vectors).all() for r, exact in results.values())
    assert {i: r.restarts for i, (r, _) in results.items()} == {hit[0]: 1, 1 - hit[0]: 0}


def test_recomputed_layers_keep_a_layers_own_forward(tiny_dir):
    """accelerate puts a forward of its own on each layer of a model spread over GPUs (it moves the
    layer's inputs to its device); recomputing layers wraps it and puts it back after, so the next
    encode's layers still move their inputs."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    from memtok.model.recompute import decoder_layers

    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    layers = list(decoder_layers(codec.lm))
    for layer in layers:
        add_hook_to_module(layer, AlignDevicesHook(execution_device="cpu", io_same_device=True))
    hooked = [layer.__dict__["forward"] for layer in layers]
    mem = codec.encode(TEXTS[0], k=1, max_steps=300, recompute_layers=True)
    assert mem.exact and [layer.__dict__.get("forward") for layer in layers] == hooked  # the next encode's


def test_recomputed_layers_keep_nothing_for_the_backward_and_change_nothing(tiny_codec, monkeypatch):
    """`recompute_layers` runs each decoder layer again in the backward pass (so its activations need
    not be kept): the same steps and the same vectors, bit for bit, one more layer pass per update."""
    from memtok.model.recompute import decoder_layers

    layer = decoder_layers(tiny_codec.lm)[0]
    cls, calls = type(layer), []
    real = cls.forward
    monkeypatch.setattr(cls, "forward", lambda self, *a, **k: (self is layer and calls.append(torch.is_grad_enabled()))
                        or real(self, *a, **k))
    plain = tiny_codec.encode(TEXTS[:2], k=1, batch_size=2, max_steps=300)
    with_grad, calls[:] = calls.count(True), []
    recomputed = tiny_codec.encode(TEXTS[:2], k=1, batch_size=2, max_steps=300, recompute_layers=True)
    assert [m.steps for m in recomputed] == [m.steps for m in plain]
    assert all(torch.equal(a.vectors, b.vectors) for a, b in zip(recomputed, plain))
    assert calls.count(True) > 1.5 * with_grad  # every pass with an update ran the layer again in its backward
    assert "forward" not in vars(layer)  # the layer's own forward again afterwards


def test_the_prefill_makes_logits_for_its_last_position_only(tiny_codec, monkeypatch):
    """Decoding needs the prefill's last logits: for the whole context they would be [rows, context,
    vocabulary], gigabytes for a long prompt and a big vocabulary."""
    import functools

    model, asked = tiny_codec.lm.model, []
    forward = model.forward
    monkeypatch.setattr(model, "forward", functools.wraps(forward)(lambda *a, **k: asked.append(k) or forward(*a, **k)))
    mem = tiny_codec.encode(TEXTS[0], k=1)
    monkeypatch.undo()
    prefills = [k for k in asked if "inputs_embeds" in k and k.get("use_cache")]
    assert mem.exact and prefills and all(k.get("logits_to_keep") == 1 for k in prefills)
    assert tiny_codec.decode(mem) == TEXTS[0]


@pytest.mark.parametrize("device, says", [
    ("gpu", "device 'gpu' is none torch knows: give cpu, cuda, cuda:N or auto"),
    ("cuda", "device 'cuda': torch .* sees no CUDA GPU here"),
    ("cuda:1", "device 'cuda:1': torch .* sees no CUDA GPU here"),
])
def test_a_device_that_cannot_be_reached_is_refused_in_one_line_before_the_model_loads(tiny_dir, capsysbinary,
                                                                                      monkeypatch, device, says):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine, whatever this one is
    for command in (["encode", TEXTS[0]], ["train-start", "--out", "never-made", "--steps", "1"]):
        code, out, err = run([*command, "--model", tiny_dir, "--device", device], capsysbinary)
        assert code != 0 and len(err.strip().splitlines()) == 1
        assert re.search(says, err) and "Traceback" not in err


def test_a_gpu_past_the_last_is_refused_with_how_many_there_are(four_gpus):
    with pytest.raises(MemtokError, match=r"device 'cuda:4': there are 4 CUDA GPUs here, cuda:0 to cuda:3"):
        MemoryCodec.from_pretrained("never-read", device="cuda:4")
