"""The learned start on the tiny model: training lowers the loss, and encoding from it takes fewer steps."""

import json
import logging
import statistics
import subprocess

import pytest
import torch
from helpers import TEXTS, memtok_cmd, one_text_curve, run
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from memtok import MemoryCodec, MemtokError
from memtok.settings.recipes import MEMTOK_LEARNED
from memtok.start.semantic import subspace
from memtok.start.start import NO_START, LearnedStart, find_start
from memtok.start.start_nets import NETS, AttentionStart, PooledStart
from memtok.training.config import NETS_READ_CODES, TrainConfig
from memtok.training.start_training import train_start
from memtok.training.texts import training_pieces


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    """A start trained on the tiny model's own sentences, and the folder it was trained in."""
    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    pieces = [codec.lm.tokenize(t) for t in TEXTS]
    out = tmp_path_factory.mktemp("start")
    cfg = TrainConfig(net="attention", steps=120, batch_size=8, lr=3e-3, width=64, save_every=40, eval_every=60,
                      min_tokens=4)
    info = train_start(codec.lm, pieces, pieces, out, cfg)
    return codec, pieces, out, info


def test_training_lowers_the_loss_below_the_mean_start(trained):
    _, _, out, info = trained
    learned, mean = info["held_out"]["learned"], info["held_out"]["mean"]
    assert learned["loss"] < 0.5 * mean["loss"]
    assert learned["token_accuracy"] > mean["token_accuracy"]
    assert info["step"] == 120 and (out / "start.safetensors").exists() and (out / "state.pt").exists()


def test_a_trained_start_takes_fewer_steps_than_the_mean(trained, monkeypatch):
    codec, _, out, _ = trained
    monkeypatch.setenv("MEMTOK_STARTS", str(out))
    start = find_start(codec.lm)
    assert start is not None and start.model_fingerprint == codec.lm.fingerprint
    mean = codec.encode(TEXTS, k=1, recipe="memtok:init=mean")
    learned = codec.encode(TEXTS, k=1, recipe="memtok:init=learned:z_scale=0")
    assert all(m.exact for m in mean + learned)
    assert statistics.median(m.steps for m in learned) < statistics.median(m.steps for m in mean)
    assert learned[0].start == start.name != "mean" and mean[0].start == "mean"
    assert codec.decode(learned) == TEXTS  # decoding needs nothing of the start


def test_the_default_plan_starts_from_the_models_learned_start(trained, monkeypatch):
    codec, _, out, _ = trained
    monkeypatch.setenv("MEMTOK_STARTS", str(out))
    mem = codec.encode(TEXTS[0])
    fixed = codec.encode(TEXTS[0], k=1, max_steps=1)
    plan = codec.plan(TEXTS[0])
    assert mem.exact and mem.recipe == MEMTOK_LEARNED.to_dict()
    assert mem.start == find_start(codec.lm).name != "mean"
    assert plan.endswith(f"; recipe {MEMTOK_LEARNED.name}, from {mem.start}")  # encode's plan line says so
    assert fixed.recipe["name"] == "memtok" and fixed.start == "mean"  # a fixed K keeps the default recipe


def test_without_a_start_for_the_model_learned_falls_back_to_the_mean_and_says_so(tiny_codec, monkeypatch,
                                                                                  tmp_path, caplog):
    monkeypatch.setenv("MEMTOK_STARTS", str(tmp_path))  # empty: no start for this model
    with caplog.at_level(logging.WARNING, logger="memtok"):
        mem = tiny_codec.encode(TEXTS[0], k=1, recipe="memtok:init=learned")
    assert mem.exact and mem.start == NO_START
    assert [r.getMessage() for r in caplog.records] == [
        f"recipe memtok:init=learned starts from a learned start, and none is installed for {tiny_codec.lm.name}: "
        "starting from the mean embedding (memtok train-start makes one)"]


def test_a_run_loads_its_start_once(trained, monkeypatch, tmp_path):
    """A run resolves its settings once and hands them to every encode: one start loaded for an
    eval, and one for a capacity run over several K."""
    import memtok.encode.resolved
    from memtok import EncodeConfig
    from memtok.runs.capacity import run_capacity
    from memtok.runs.evaluate import run_eval
    from memtok.runs.sources import Source

    codec, _, out, _ = trained
    monkeypatch.setenv("MEMTOK_STARTS", str(out))
    loads, real = [], memtok.encode.resolved.find_start
    monkeypatch.setattr(memtok.encode.resolved, "find_start", lambda lm: loads.append(lm) or real(lm))
    source = Source("texts", TEXTS[:2], "0" * 64)
    run_eval(codec, source, tmp_path / "eval", EncodeConfig(k=1, recipe="memtok:init=learned", max_steps=50),
             show_progress_bar=False)
    assert len(loads) == 1
    run_capacity(codec, source, tmp_path / "capacity", [4], [1, 2], EncodeConfig(recipe="memtok:init=learned",
                                                                                 max_steps=20),
                 show_progress_bar=False)
    assert len(loads) == 2


def test_a_start_installed_later_never_changes_what_a_folder_resumes_with(trained, monkeypatch, tmp_path):
    """A folder begun without a start pins `memtok`; once a start is installed, the same command (no
    --recipe) goes on with `memtok`, where a new folder would take the start."""
    from memtok.runs.evaluate import run_eval
    from memtok.runs.sources import Source

    codec, _, out, _ = trained
    source = Source("texts", TEXTS[:2], "0" * 64)
    monkeypatch.setenv("MEMTOK_STARTS", str(tmp_path / "none"))
    first = run_eval(codec, Source("texts", TEXTS[:1], "0" * 64), tmp_path / "run", show_progress_bar=False)
    assert first["run"]["recipe"]["name"] == "memtok" and "start" not in first["run"]
    monkeypatch.setenv("MEMTOK_STARTS", str(out))
    resumed = run_eval(codec, source, tmp_path / "run", show_progress_bar=False)
    assert resumed["run"]["recipe"] == first["run"]["recipe"] and resumed["resumed_with"] == 1
    fresh = run_eval(codec, source, tmp_path / "fresh", show_progress_bar=False)
    assert fresh["run"]["recipe"]["init"] == "learned" and fresh["run"]["start"] == find_start(codec.lm).name


def test_a_stopped_training_run_goes_on_where_it_stopped(tiny_dir, tmp_path):
    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    pieces = [codec.lm.tokenize(t) for t in TEXTS]
    cfg = TrainConfig(steps=10, batch_size=4, width=16, save_every=5, eval_every=10, min_tokens=4)
    train_start(codec.lm, pieces, pieces, tmp_path / "whole", cfg)

    def stop_at_5(step: int, loss: float, accuracy: float) -> None:
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_start(codec.lm, pieces, pieces, tmp_path / "parts", cfg, on_step=stop_at_5)
    assert torch.load(tmp_path / "parts" / "state.pt", weights_only=True)["step"] == 5
    train_start(codec.lm, pieces, pieces, tmp_path / "parts", cfg)
    whole, parts = (LearnedStart.load(tmp_path / name / "start.safetensors").net.state_dict() for name in ("whole", "parts"))
    assert all(torch.equal(whole[k], parts[k]) for k in whole)  # the same batches, the same updates
    with pytest.raises(MemtokError, match="other settings"):
        train_start(codec.lm, pieces, pieces, tmp_path / "parts", TrainConfig(**{**cfg.__dict__, "lr": 0.5}))


def test_a_start_file_is_refused_when_it_is_not_one(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(MemtokError, match="cannot read start file"):
        LearnedStart.load(bad)


def test_find_start_ignores_starts_of_other_models(tiny_codec, trained, monkeypatch):
    _, _, out, _ = trained
    start = LearnedStart.load(out / "start.safetensors")
    start.model_fingerprint = "0" * 64
    other = out.parent / "other-starts"
    other.mkdir(exist_ok=True)
    start.save(other / "start.safetensors")
    monkeypatch.setenv("MEMTOK_STARTS", str(other))
    assert find_start(tiny_codec.lm) is None


def test_an_attention_start_gives_each_vector_its_own_query_and_reads_the_code(trained):
    codec, pieces, out, _ = trained
    start = LearnedStart.load(out / "start.safetensors")
    assert isinstance(start.net, AttentionStart) and start.net.code_rank == subspace(codec.lm)[0].shape[1]
    two = start.vectors(codec.lm, pieces[:2], k=2)
    assert two.shape == (2, 2, codec.lm.hidden_size) and not torch.equal(two[:, 0], two[:, 1])
    one = start.vectors(codec.lm, pieces[:2], k=1)[:, 0]  # the first query's vector, whatever K
    # to float32 rounding of sums over the network's width, taken in another order for another shape
    assert torch.allclose(one, two[:, 0], rtol=0, atol=start.net.width * torch.finfo(torch.float32).eps
                          * float(two.abs().max()))
    codes = torch.randn(2, start.net.code_rank, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(start.vectors(codec.lm, pieces[:2], 1, codes), start.vectors(codec.lm, pieces[:2], 1))
    monkey = pytest.MonkeyPatch()
    monkey.setenv("MEMTOK_STARTS", str(out))
    try:
        mems = codec.encode(TEXTS[:3], k=1, recipe=MEMTOK_LEARNED.name, semantic="self")
    finally:
        monkey.undo()
    assert all(m.exact for m in mems) and mems[0].start == start.name


def test_a_start_file_from_before_there_were_two_networks_loads_as_the_pooled_one(tiny_codec, tmp_path):
    net = PooledStart(tiny_codec.lm.hidden_size, (0, 1), 16)
    LearnedStart(net, tiny_codec.lm.fingerprint, "old@1", {}).save(tmp_path / "s.safetensors")
    tensors, meta = load_file(tmp_path / "s.safetensors"), safe_open(str(tmp_path / "s.safetensors"), "pt").metadata()
    save_file(tensors, tmp_path / "old.safetensors", {k: v for k, v in meta.items() if k not in ("kind", "code_rank")})
    assert isinstance(LearnedStart.load(tmp_path / "old.safetensors").net, PooledStart)
    save_file(tensors, tmp_path / "bad.safetensors", {**meta, "kind": "transformer"})
    with pytest.raises(MemtokError, match="none of"):
        LearnedStart.load(tmp_path / "bad.safetensors")


def test_a_time_budget_stops_a_run_that_the_same_call_resumes(tiny_dir, tmp_path):
    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    pieces = [codec.lm.tokenize(t) for t in TEXTS]
    cfg = TrainConfig(steps=4, batch_size=4, width=16, save_every=5, eval_every=10, min_tokens=4)
    info = train_start(codec.lm, pieces, pieces, tmp_path, cfg, sources=["the tests' texts"], budget_s=0)
    assert info["step"] == 0 and torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 0
    info = train_start(codec.lm, pieces, pieces, tmp_path, cfg, sources=["the tests' texts"])
    assert info["step"] == 4 and info["examples"] == 16 and info["sources"] == ["the tests' texts"]
    assert LearnedStart.load(tmp_path / "start.safetensors").info["sources"] == ["the tests' texts"]
    assert (tmp_path / "start-16.safetensors").exists() is False  # snapshots from 1000 examples on


@pytest.mark.slow  # two processes under torchrun
def test_two_gloo_processes_train_the_same_start_as_one(tiny_dir, tmp_path):
    """Each process takes its share of every batch (3 texts: two and one) and DDP averages the
    gradients, each text weighing the same: the update is the one-process update, up to the
    rounding of a sum taken in another order. A batch smaller than the process count runs too."""
    def two(batch: int, out: str) -> None:
        p = subprocess.run(memtok_cmd("train-start", "--model", tiny_dir, "--device", "cpu", "--steps", "3",
                                      "--batch-size", str(batch), "--width", "16", "--piece-tokens", "4", "12",
                                      "--net", "attention", "--text", "pydoc-topics",  # a code input
                                      "--out", str(tmp_path / out), nproc=2),
                           capture_output=True, timeout=600, check=False)
        assert p.returncode == 0, p.stderr.decode()[-1500:]

    two(3, "two")
    two(1, "lone")
    lm = MemoryCodec.from_pretrained(tiny_dir, device="cpu").lm  # the same run in this one process
    cfg = TrainConfig(net="attention", steps=3, batch_size=3, width=16, min_tokens=4, max_tokens=12)
    pieces = training_pieces(lm, ["pydoc-topics"], {}, (4, 12))
    train_start(lm, pieces.train, pieces.held, tmp_path / "one", cfg)
    net = LearnedStart.load(tmp_path / "one" / "start.safetensors").net
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the first weights, as a run of seed 0 draws them
        first = NETS[net.kind](net.down.weight.shape[0], net.layers, 16, net.code_rank).state_dict()
    one, two_, lone = (torch.load(tmp_path / n / "state.pt", weights_only=True)["net"] for n in ("one", "two", "lone"))
    moved = sum(float((one[k] - first[k]).norm() ** 2) for k in one) ** 0.5
    apart = sum(float((one[k] - two_[k]).norm() ** 2) for k in one) ** 0.5
    assert moved > 0 and apart < 0.01 * moved, (apart, moved)
    assert sum(float((lone[k] - first[k]).norm()) for k in lone) > 0  # the batch of one trained as well


def test_train_start_under_bf16_autocast_shows_progress_and_ends_with_a_summary(tiny_dir, tmp_path, capsysbinary):
    """What `--device cuda --bf16` runs on a GPU, on the CPU's own bfloat16 autocast."""
    code, out, err = run(["train-start", "--model", tiny_dir, "--device", "cpu", "--steps", "2", "--batch-size", "4",
                          "--width", "16", "--piece-tokens", "4", "12", "--bf16", "--text", "pydoc-topics",
                          "--out", str(tmp_path)], capsysbinary)
    assert code == 0 and out == b"", err
    assert "training" in err and "step 2 of 2 (8 examples" in err and "held-out token accuracy" in err
    assert LearnedStart.load(tmp_path / "start.safetensors").info["config"]["bf16"] is True


def test_a_restart_from_the_learned_start_begins_there_with_the_next_seeds_factorisation(trained, monkeypatch):
    """`restart_init=learned`: a restart starts from the text's learned start again, a new random
    step away from it, where the default restart starts from the mean."""
    codec, _, out, _ = trained
    monkeypatch.setenv("MEMTOK_STARTS", str(out))
    _, points = one_text_curve(codec, "memtok:init=learned:restart_after=1:restart_init=learned", max_steps=40)
    first_after = next(p for p in points if p.restarts == 1)
    _, fresh = one_text_curve(codec, "memtok:init=learned:seed=1", max_steps=1)
    _, from_mean = one_text_curve(codec, "memtok:seed=1", max_steps=1)
    # the same start through the same computation: equal, give or take float32 rounding (eps 1.2e-7)
    # accumulated over the model's sums
    assert first_after.loss == pytest.approx(fresh[0].loss, rel=1e-5)
    assert first_after.loss != pytest.approx(from_mean[0].loss, rel=1e-3)  # and not where the mean would be


def test_a_run_stopped_between_saves_resumes_with_each_step_once_in_its_curve(tiny_dir, tmp_path):
    codec = MemoryCodec.from_pretrained(tiny_dir, device="cpu")
    pieces = [codec.lm.tokenize(t) for t in TEXTS]
    cfg = TrainConfig(steps=5, batch_size=4, width=16, save_every=2, eval_every=10, min_tokens=4)

    def killed_at_3(step: int, loss: float, accuracy: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_start(codec.lm, pieces, pieces, tmp_path, cfg, on_step=killed_at_3)
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 2
    with open(tmp_path / "log.jsonl", "a") as log:
        log.write('{"step": 2, "lo{"step": 2}\n{"step": 3, "lo')  # rows a kill ran together and cut off
    train_start(codec.lm, pieces, pieces, tmp_path, cfg)
    rows = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5]


def test_a_training_option_with_no_effect_is_refused(tiny_codec, tmp_path):
    """Piece lengths the pieces do not have, a share of coded batches for a network that reads no
    code, a code rank for it: each refused, none silently ignored."""
    from memtok.errors import MemtokError
    from memtok.start.start_nets import make_net

    pieces = [tiny_codec.lm.tokenize(t) for t in TEXTS]  # 7 to 24 tokens
    with pytest.raises(MemtokError, match="pieces of 7-24 tokens, where the config asks for 8-40"):
        train_start(tiny_codec.lm, pieces, pieces, tmp_path, TrainConfig(steps=1))
    with pytest.raises(MemtokError, match="reads no code"):
        TrainConfig(net="pooled-mlp", semantic_share=0.9)
    with pytest.raises(ValueError, match="reads no code"):
        make_net("pooled-mlp", 64, (0, 1), 16, code_rank=8)


def test_a_run_begins_from_a_start_file_and_trains_through_the_encodes_steps(trained, tmp_path):
    """`init_from`: the network begins as the file's (its examples counted on); `unroll`: the
    held-out figures include the loss after that many of the encode's steps, the loss it trains on."""
    codec, pieces, out, info = trained
    cfg = TrainConfig(net="attention", steps=2, batch_size=4, width=64, min_tokens=4, unroll=2,
                      init_from=str(out / "start.safetensors"), lr=1e-12)
    warm = train_start(codec.lm, pieces, pieces, tmp_path / "warm", cfg)
    assert warm["warm_start"]["examples"] == info["examples"] and warm["examples_in_all"] == info["examples"] + 8
    assert set(warm["held_out"]) == {"learned", "learned+2", "mean", "mean+2"}
    # a rate of 1e-12 leaves the network where the file put it: its guess scores as the file's did, up
    # to the file's float16 weights (11 bits: a relative rounding of 4.9e-4 a weight), hence rel 1e-3
    assert warm["held_out"]["learned"]["loss"] == pytest.approx(info["held_out"]["learned"]["loss"], rel=1e-3)
    with pytest.raises(MemtokError, match="holds a network attention of width 64, where this run asks for attention of width 16"):
        train_start(codec.lm, pieces, pieces, tmp_path / "other", TrainConfig(**{**cfg.__dict__, "width": 16}))


def test_the_training_config_knows_every_start_network_and_what_it_reads():
    """The command line reads the networks' names without importing torch: they must be the networks'."""
    assert NETS_READ_CODES == {kind: net.reads_codes for kind, net in NETS.items()}
