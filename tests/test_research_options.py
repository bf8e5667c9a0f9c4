"""What a researcher reaches for first: recipe fields on the command line, step logs, honest times."""

import json
import time

import pytest
from helpers import TEXTS, run, write_csv

from memtok import EncodeConfig, MemtokError
from memtok.encode.steplog import StepLog, read_steps
from memtok.runs.evaluate import run_eval
from memtok.runs.sources import read_rows, read_source
from memtok.settings.recipes import MEMTOK, PAPER, parse_recipe, recipe_spec


def test_a_recipe_spec_changes_the_named_fields_and_only_those():
    r = parse_recipe("memtok:lr=0.1:rank=64:betas=0.9,0.95:patience=none:bos=false")
    assert (r.lr, r.rank, r.betas, r.patience, r.bos) == (0.1, 64, (0.9, 0.95), None, False)
    assert {k: v for k, v in r.to_dict().items() if k not in ("lr", "rank", "betas", "bos", "name")} == \
        {k: v for k, v in MEMTOK.to_dict().items() if k not in ("lr", "rank", "betas", "bos", "name")}
    assert r.name == "memtok:lr=0.1:rank=64:betas=0.9,0.95:patience=none:bos=false"
    assert parse_recipe("paper") is PAPER


@pytest.mark.parametrize("spec, says", [
    ("memtok:lr=fast", "lr takes float"),
    ("memtok:colour=red", "fields: optimizer, lr"),
    ("memtok:lr", "not field=value"),
    ("nosuch:lr=1", "choose one of memtok"),
    ("memtok:init=zeros", "not a valid Init"),
    ("memtok:rank=-1", "rank must be between"),
    ("memtok:restart_after=0", "restart_after must be at least 1"),
    ("memtok:restart_init=learned", "restart_init=learned starts again from where init=learned began"),
    ("memtok:lr=nan", "lr takes float"),
])
def test_a_bad_recipe_spec_is_refused_with_what_is_valid(spec, says):
    with pytest.raises(MemtokError, match=says):
        EncodeConfig(recipe=spec)


def test_recipe_spec_gives_back_the_recipe_it_was_made_from():
    for spec in ("memtok", "memtok:lr=0.1:rank=64", "paper:bos=true:max_steps=500", "kuratov:patience=none"):
        recipe = parse_recipe(spec)
        assert parse_recipe(recipe_spec(recipe.to_dict())).to_dict() | {"name": ""} == recipe.to_dict() | {"name": ""}


def test_recipe_fields_on_the_command_line(tiny_dir, tmp_path, capsysbinary):
    mem = tmp_path / "m.safetensors"
    code, out, err = run(["encode", TEXTS[0], "-o", str(mem), "--model", tiny_dir, "-k", "1", "--json",
                          "--recipe", "memtok:lr=0.1:rank=8"], capsysbinary)
    assert code == 0, err
    from memtok import Memory

    recipe = Memory.load(mem).recipe
    assert (recipe["lr"], recipe["rank"], recipe["name"]) == (0.1, 8, "memtok:lr=0.1:rank=8")
    code, _, err = run(["encode", TEXTS[0], "-o", str(tmp_path / "x.safetensors"), "--model", tiny_dir,
                        "--recipe", "memtok:lr=zz"], capsysbinary)
    assert code == 2 and err.strip().count("\n") == 0 and "lr takes float" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_encode_log_steps_keeps_each_texts_curve(tiny_dir, tmp_path, capsysbinary):
    mem = tmp_path / "m.safetensors"
    code, _, err = run(["encode", TEXTS[4], "-o", str(mem), "--model", tiny_dir, "-k", "1", "--log-steps", "5"],
                       capsysbinary)
    assert code == 0, err
    rows = read_steps(f"{mem}.steps.jsonl")
    from memtok import Memory

    steps = Memory.load(mem).steps
    assert [r["step"] for r in rows] == sorted({*range(0, steps + 1, 5), steps})
    assert all({"text", "segment", "k", "loss", "accuracy", "margin", "done"} <= r.keys() for r in rows)
    assert [r["done"] for r in rows] == [False] * (len(rows) - 1) + [True]
    assert rows[-1]["accuracy"] == 1.0 and rows[-1]["margin"] > 0  # exact: every target right


def test_eval_log_steps_labels_rows_by_dataset_index_and_plots_them(tiny_codec, tmp_path):
    data = write_csv(tmp_path / "d.csv", ["", *TEXTS[:3]])  # row 0 is refused: the others keep their index
    out = tmp_path / "run"
    summary = run_eval(tiny_codec, read_source(str(data)), out, EncodeConfig(k=1, max_steps=300),
                       show_progress_bar=False, log_steps=10)
    rows = read_steps(out / "steps.jsonl")
    assert {r["index"] for r in rows} == {1, 2, 3}
    results = {json.loads(line)["index"]: json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()}
    for i in (1, 2, 3):
        last = [r for r in rows if r["index"] == i][-1]
        assert last["done"] and last["step"] == results[i]["steps"]
    assert summary["step_log"] and (out / "steps.png").stat().st_size > 0 and "steps.png" in (out / "report.md").read_text()


def test_step_log_refuses_a_period_below_one(tmp_path):
    with pytest.raises(ValueError):
        StepLog(tmp_path / "s.jsonl", 0, lambda key: key)


def test_seconds_per_text_add_up_to_the_runs_wall_time(tiny_codec):
    """Texts optimised side by side share each pass: their seconds add up to at most the call's wall
    time, while each one's first-to-last-pass time (`elapsed_seconds`) lies within it too."""
    texts = TEXTS[:6]
    started = time.perf_counter()
    mems = tiny_codec.encode(texts, k=1, batch_size=6, max_steps=300)
    wall = time.perf_counter() - started
    shared = sum(m.seconds for m in mems)
    assert 0 < shared <= wall  # every second counted once at most (the rest: the cut, sizes, the bound)
    assert all(0 < m.elapsed_seconds <= wall for m in mems)


def test_a_row_range_is_a_slice():
    rows = [str(i) for i in range(10)]
    assert read_rows(rows, "7:") == ["7", "8", "9"] and read_rows(rows, ":2") == ["0", "1"]
    assert read_rows(rows, "2:4") == ["2", "3"] and read_rows(rows, None) == rows
    for bad in ("7", "a:b", "1:2:3"):
        with pytest.raises(MemtokError, match="START:END"):
            read_rows(rows, bad)


def test_eval_rows_numbers_results_by_source_row_and_pins_the_range(tiny_codec, tmp_path):
    data = write_csv(tmp_path / "d.csv", TEXTS)
    out = tmp_path / "run"
    run_eval(tiny_codec, read_source(str(data), rows="5:", limit=2), out, EncodeConfig(k=1, max_steps=300),
             show_progress_bar=False)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [5, 6]
    assert sorted(p.name for p in (out / "memories").iterdir()) == ["000005.safetensors", "000006.safetensors"]
    from memtok import Memory

    assert tiny_codec.decode(Memory.load(out / "memories" / "000006.safetensors")) == TEXTS[6]
    assert json.loads((out / "run.json").read_text())["rows"] == "5:"
    with pytest.raises(MemtokError, match="other settings.*rows"):
        run_eval(tiny_codec, read_source(str(data), rows="4:", limit=2), out, EncodeConfig(k=1, max_steps=300),
                 show_progress_bar=False)


def test_split_is_for_hub_datasets(tmp_path):
    data = write_csv(tmp_path / "d.csv", TEXTS)
    with pytest.raises(MemtokError, match="--split and --subset choose a part of a hub dataset"):
        read_source(str(data), split="test")
    with pytest.raises(MemtokError, match="--split and --subset choose a part of a hub dataset"):
        read_source(str(data), subset="en")


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_a_model_loaded_in_another_dtype_makes_memories_only_that_dtype_decodes(dtype, tiny_dir, tiny_codec, tmp_path,
                                                                                capsysbinary):
    mem = tmp_path / f"{dtype}.safetensors"
    code, _, err = run(["encode", TEXTS[0], "-o", str(mem), "--model", tiny_dir, "-k", "1", "--model-dtype",
                        dtype], capsysbinary)
    assert code == 0, err
    code, out, err = run(["decode", str(mem), "--model", tiny_dir, "--model-dtype", dtype], capsysbinary)
    assert code == 0 and out == TEXTS[0].encode()
    from memtok import Memory, ModelMismatchError

    with pytest.raises(ModelMismatchError):  # same weights, other arithmetic: refused before decoding
        tiny_codec.decode(Memory.load(mem))


def test_chat_puts_the_memory_in_the_users_turn_with_the_templates_own_tokens(tiny_dir, tmp_path):
    from helpers import with_chat

    from memtok import Memory, MemoryCodec

    chat_dir = with_chat(tiny_dir, tmp_path / "chat-model")
    codec = MemoryCodec.from_pretrained(str(chat_dir), device="cpu")
    tok = codec.lm.tokenizer
    mem = codec.encode(TEXTS[0], k=1, chat=True)
    assert mem.exact and codec.decode(mem) == TEXTS[0]
    # <s> and <|endoftext|> each one token, not spelt out; no BOS of the recipe's before the template's own
    assert (mem.prefix_ids, mem.infix_ids) == ([tok.bos_token_id], [tok.convert_tokens_to_ids("<|endoftext|>")])
    assert mem.template == "<s>{memory}<|endoftext|>"
    saved = tmp_path / "m.safetensors"
    mem.save(saved)
    assert codec.decode(Memory.load(saved)) == TEXTS[0]


def test_chat_is_refused_for_a_model_without_a_chat_template(tiny_codec):
    with pytest.raises(MemtokError, match="no chat template"):
        tiny_codec.encode(TEXTS[0], k=1, chat=True)
