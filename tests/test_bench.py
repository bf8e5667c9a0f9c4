"""Every bench script runs, on the tiny model and a few texts, in this process: a bench that rots is
found here, not on the day its figure is wanted. Its figures are not checked (benches are not tests);
that it runs to its end and writes its JSON with where the figures came from is."""

import json
import runpy
import sys
from pathlib import Path

import pytest
from helpers import TEXTS, with_chat, write_csv

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "common")


def cli(*args: str) -> None:
    from memtok.cli import main

    try:
        main(list(args))
    except SystemExit as stop:
        assert not stop.code, f"memtok {' '.join(args)} exited {stop.code}"


@pytest.fixture(scope="module")
def made(tiny_dir, tmp_path_factory) -> dict:
    """What the benches read, all of the tiny model: a data folder in the paper's file names, an eval
    folder, one of compact memories, a store, and a learned start."""
    root = tmp_path_factory.mktemp("bench")
    data = root / "paper"
    data.mkdir()
    for name in ("raschka_chunks_100.csv", "raschka_chunks_1000.csv", "chunks.csv"):
        write_csv(data / name, TEXTS[3:6])  # words of more than three letters, for the search benches' queries
    csv = str(data / "raschka_chunks_100.csv")
    common = ["--model", tiny_dir, "--device", "cpu", "--max-steps", "300"]
    cli("eval", csv, "-k", "1", "--out", str(root / "eval"), *common)
    cli("eval", csv, "--compact", "--out", str(root / "compact"), *common)
    cli("encode-corpus", csv, "--out", str(root / "store"), *common)
    cli("train-start", "--out", str(root / "start"), "--steps", "2", "--batch-size", "2", "--model", tiny_dir,
        "--device", "cpu", "--text", "pydoc-topics")
    return {"model": tiny_dir, "chat_model": with_chat(tiny_dir, root / "chat-model"), "data": str(data), "csv": csv, "eval": str(root / "eval"),
            "compact": str(root / "compact"), "store": str(root / "store"), "start": str(root / "start"),
            "json": str(root / "out.json")}


def argv(name: str, m: dict) -> list[str]:
    """The smallest run of each bench on the tiny model."""
    model, csv, data, folder = ["--model", m["model"]], ["--data", m["csv"]], ["--data-dir", m["data"]], m["eval"]
    return {
        "batched_vs_single": [*model, "--batch-sizes", "1,2", "--threads", "1", "--tokens", "4"],
        "decode_many": [folder, "--limit", "3", "--batch-sizes", "2"],
        "decode_stored": [folder],
        "detect": [folder, *model, "--snap", folder, "--snap-limit", "1"],
        "fp16_rounding": [m["store"]],
        "gpu_round_trips": ["--device", "cpu"],
        "input_gradients": [*model, "--kinds", "float32,bfloat16"],
        "kill_anywhere": [*model, "--kills", "1", "--rows", "4", "--processes", "1"],
        "languages": ["--models", m["model"], "--per-language", "1", "--languages", "english", "--max-steps", "50",
                      "--out", str(Path(m["json"]).with_name("languages"))],
        "learned_start": [*model, *data, "--limit", "2", "--recipes", "memtok,memtok-learned",
                          "--starts", m["start"] + "/start.safetensors"],
        "level_entropy": [m["compact"]],
        "misuse": ["--model", m["chat_model"], *csv, "--limit", "2", "--memories", folder, "--prepend", "1"],
        "model_dtypes": [*model, *csv, "--limit", "2", "--dtypes", "float32,bfloat16"],
        "oom_backoff": [],
        "oracle_start": [*model, *data, "--limit", "2", "--fractions", "1"],
        "paraphrases": [*model, *data, "--teachers", "self"],
        "peak_memory": [*model, "--sizes", "1000"],
        "processes": [*model, *csv, "--limit", "3", "--max-steps", "50", "--processes", "1"],
        "profile_encode": [*model, *csv, "--limit", "2", "--max-steps", "5"],
        "random_basis": [*model, *csv, "--configs", "16:int8:8", "--max-steps", "20"],
        "recipes": [*model, *csv, "--limit", "2", "--recipes", "memtok", "--max-steps", "50"],
        "retrieval": [folder, "--query-limit", "2", "--scale", "2"],
        "same_memories": [*model, "--max-steps", "20", "--write", m["json"]],
        "segments": [*model, *csv, "--limit", "1", "--configs", "k=1:segment_tokens=8:max_steps=50,k=1:storage=int4:max_steps=50",
                     "--batch-size", "2"],
        "semantic_codes": [*model, *data, "--ranks", "8", "--whitening-pieces", "64"],
        "size_table": [folder],
        "start_curve": [m["start"] + "/start.safetensors", *model, *data, "--limit", "2"],
        "start_positions": [m["start"] + "/start.safetensors", *model, "--limit", "4", "--text", "pydoc-topics"],
        "step_time": [*model, "--batch-sizes", "2", "--repeats", "1", "--warmups", "0", "--variants", "float32"],
        "vector_index": ["--sizes", "50", "--dim", "8", "--queries", "5", "--methods", "exact (torch),faiss flat (exact),usearch HNSW"],
        "wrong_positions": [folder, "--all"],
    }[name]


# what only a CUDA GPU can show (`make gpu-check` runs it there)
NEEDS_CUDA = {"oom_backoff": "a real out-of-memory needs a GPU"}
# benches that start processes of their own (seconds each): with the slow tests
PROCESSES = {"kill_anywhere", "peak_memory", "processes"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in PROCESSES else n for n in SCRIPTS])
def test_every_bench_runs_on_the_tiny_model(name, made, monkeypatch, capsys):
    import torch

    if name in NEEDS_CUDA and not torch.cuda.is_available():
        pytest.skip(NEEDS_CUDA[name])
    args = argv(name, made)
    wants_json = "--json" not in args and name != "same_memories"
    if wants_json and 'add_argument("--json"' in (BENCH / f"{name}.py").read_text():
        args += ["--json", made["json"]]
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", *args])
    monkeypatch.syspath_prepend(str(BENCH))
    try:
        runpy.run_path(str(BENCH / f"{name}.py"), run_name="__main__")
    except SystemExit as stop:
        assert not stop.code, f"bench/{name}.py exited {stop.code}"
    if "--json" in args or name == "same_memories":
        written = json.loads(Path(made["json"]).read_text())
        assert {"command", "commit", "versions", "torch_threads", "cpu"} <= set(written["provenance"])
        Path(made["json"]).unlink()
