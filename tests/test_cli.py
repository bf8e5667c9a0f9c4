"""The command line on the tiny model: round trips, byte-exact output, one-line errors, exit codes."""

import json
import subprocess
import sys

import pytest
from helpers import DEVICE, TEXTS, run


def test_encode_decode_round_trip_is_byte_exact(tiny_dir, tmp_path, capsysbinary, monkeypatch):
    text = TEXTS[7]  # the slow tests show a trailing newline surviving on the real model
    src = tmp_path / "t.txt"
    src.write_bytes(text.encode())
    mem = tmp_path / "t.safetensors"
    code, out, err = run(["encode", "-f", str(src), "-o", str(mem), "--model", tiny_dir, "--json"], capsysbinary)
    assert code == 0, err
    record = json.loads(out)
    assert record["exact"] is True and record["path"] == str(mem) and record["n_tokens"] > 0
    assert {"steps", "seconds"} <= record.keys()
    assert record["payload_bytes"] == 4 * 64 * record["k"] + 4 + 3 and record["zstd_bytes"] > 0
    assert record["to_zstd"] == round(record["payload_bytes"] / record["zstd_bytes"], 3) and record["to_entropy"] > 0
    assert "exact:" in err.splitlines()[-1]  # the one-line summary
    code, out, err = run(["decode", str(mem)], capsysbinary)
    assert code == 0 and out == text.encode()
    dest = tmp_path / "back.txt"
    code, _, _ = run(["decode", str(mem), "-o", str(dest)], capsysbinary)
    assert code == 0 and dest.read_bytes() == text.encode()


def test_encode_reads_standard_input_and_argument(tiny_dir, tmp_path, capsysbinary, monkeypatch):
    mem = tmp_path / "s.safetensors"
    code, _, err = run(["encode", "-o", str(mem), "--model", tiny_dir], capsysbinary, TEXTS[2].encode(), monkeypatch)
    assert code == 0, err
    assert run(["decode", str(mem)], capsysbinary)[1] == TEXTS[2].encode()
    code, _, err = run(["encode", TEXTS[3], "-o", str(mem), "--model", tiny_dir, "--keep-text"], capsysbinary)
    assert code == 0, err
    code, out, _ = run(["info", str(mem), "--json"], capsysbinary)
    info = json.loads(out)
    assert info["text"] == TEXTS[3] and info["exact"] is True and info["bytes"] == 4 * info["hidden_size"]
    assert info["text_sizes"]["utf8"] == len(TEXTS[3].encode()) and {"gzip", "xz", "zstd"} <= info["text_sizes"].keys()
    # the bound is recorded when encoded, so info needs no model for it
    assert info["entropy_bits"] > 0 and info["sizes"]["payload_bytes"] == info["bytes"] + 4 + 3
    code, out, _ = run(["info", str(mem)], capsysbinary)
    assert code == 0 and b"fingerprint" in out


def test_tokens_auto_and_segments_from_the_command_line(tiny_dir, tmp_path, capsysbinary):
    mem = tmp_path / "auto.safetensors"
    code, out, err = run(["encode", TEXTS[2], "-o", str(mem), "--model", tiny_dir, "--tokens", "auto",
                          "--max-steps", "200", "--recipe", "memtok-sgd", "--json"], capsysbinary)
    assert code == 0, err
    assert json.loads(out)["k"] >= 2  # one vector cannot do it in the 50 steps a first try gets (plain SGD)
    text = " ".join(TEXTS[:2])
    code, _, err = run(["encode", text, "-o", str(mem), "--model", tiny_dir, "-k", "1", "--segment-tokens", "9",
                        "--max-steps", "1"], capsysbinary)
    assert code == 1 and "(3 segments)" in err  # not exact after one step, but cut at "mat." and a space
    code, out, _ = run(["info", str(mem)], capsysbinary)
    assert b"segments" in out and b"tokens in 1" in out


def test_not_exact_is_said_and_exits_1(tiny_dir, tmp_path, capsysbinary):
    mem = tmp_path / "hard.safetensors"
    code, _, err = run(["encode", "zebra quantum fjord", "-o", str(mem), "--model", tiny_dir, "-k", "1", "--max-steps", "5"],
                       capsysbinary)
    assert code == 1 and "NOT exact" in err
    code, out, err = run(["decode", str(mem)], capsysbinary)  # decode's own check refuses what it cannot give back
    assert code == 1 and out == b"" and "does not match" in err and "not exact when made" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(["decode", str(mem), "--unchecked"], capsysbinary)  # for inspection: printed, still exit 1
    assert code == 1 and out and out != b"zebra quantum fjord" and "does not match" in err


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_dir, other_tiny_dir):
    from memtok import MemoryCodec

    d = tmp_path_factory.mktemp("bad")
    (d / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (d / "empty.txt").write_bytes(b"")
    (d / "junk.safetensors").write_bytes(b"\x00" * 64)
    MemoryCodec.from_pretrained(tiny_dir, device=DEVICE).encode(TEXTS[0]).save(d / "good.safetensors")
    return d


BAD = {
    "empty argument": ["encode", "", "--model", "{tiny}"],
    "empty file": ["encode", "-f", "{d}/empty.txt", "--model", "{tiny}"],
    "no room for text": ["encode", "x", "--tokens", "70", "--model", "{tiny}"],  # its context is 64
    "missing file": ["encode", "-f", "{d}/nope.txt", "--model", "{tiny}"],
    "directory": ["encode", "-f", "{d}", "--model", "{tiny}"],
    "not utf-8": ["encode", "-f", "{d}/latin1.txt", "--model", "{tiny}"],
    "text and file": ["encode", "x", "-f", "{d}/latin1.txt", "--model", "{tiny}"],
    "K zero": ["encode", "x", "--tokens", "0", "--model", "{tiny}"],
    "K too big": ["encode", "x", "--tokens", "999", "--model", "{tiny}"],
    "K not a number": ["encode", "x", "--tokens", "many", "--model", "{tiny}"],
    "segment zero": ["encode", "x", "--segment-tokens", "0", "--model", "{tiny}"],
    "steps zero": ["encode", "x", "--max-steps", "0", "--model", "{tiny}"],
    "bad template": ["encode", "x", "--template", "no placeholder", "--model", "{tiny}"],
    "missing model": ["encode", "x", "--model", "{d}/no-such-model/"],
    "decode junk": ["decode", "{d}/junk.safetensors"],
    "decode text file": ["decode", "{d}/latin1.txt"],
    "decode missing": ["decode", "{d}/nope.safetensors"],
    "info junk": ["info", "{d}/junk.safetensors"],
    "other model": ["decode", "{d}/good.safetensors", "--model", "{other}"],
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_leaves_no_file(case, files, tiny_dir, other_tiny_dir, tmp_path,
                                                          capsysbinary):
    out = tmp_path / "out.safetensors"
    args = [a.format(d=files, tiny=tiny_dir, other=other_tiny_dir) for a in BAD[case]]
    args += ["-o", str(out)] if args[0] in ("encode", "decode") else []
    code, stdout, err = run(args, capsysbinary)
    assert code == 2, (case, err)
    assert stdout == b""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memtok: error: "), err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a subprocess
def test_real_process_pipes_and_exit_codes(tiny_dir, tmp_path):
    """The installed entry point, as a shell runs it."""
    mem = tmp_path / "p.safetensors"
    enc = subprocess.run([sys.executable, "-m", "memtok", "encode", "-o", str(mem), "--model", tiny_dir],
                         input=TEXTS[5].encode(), capture_output=True, check=False)
    assert enc.returncode == 0, enc.stderr
    dec = subprocess.run([sys.executable, "-m", "memtok", "decode", str(mem)], capture_output=True, check=False)
    assert dec.returncode == 0 and dec.stdout == TEXTS[5].encode()
    bad = subprocess.run([sys.executable, "-m", "memtok", "info", str(tmp_path / "missing")], capture_output=True, check=False)
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1


def test_the_library_speaks_of_settings_and_the_command_line_of_its_options(tiny_codec, tiny_dir, capsysbinary):
    """A core error names a setting as Python does (`chat=True`); `memtok` says the option that sets it."""
    import ast
    from pathlib import Path

    from memtok.errors import MemtokError

    with pytest.raises(MemtokError, match=r"leave out chat=True$"):
        tiny_codec.encode(TEXTS[0], k=1, chat=True)
    code, _, err = run(["encode", TEXTS[0], "--model", tiny_dir, "--device", "cpu", "-k", "1", "--chat"], capsysbinary)
    assert code == 2 and err.strip().endswith("leave out --chat")
    core = Path(__file__).resolve().parent.parent / "memtok"
    flagged = []
    for path in [p for p in core.rglob("*.py") if p.parent.name not in ("cli", "runs", "analysis", "training", "store")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and "--" in ast.unparse(node).replace("--no-deps", ""):
                flagged.append(f"{path.name}:{node.lineno}")
    assert not flagged, f"core errors that name a command-line option: {flagged}"


def test_help_needs_no_torch():
    """`memtok --help` (and the command line's options) read no model library: it answers at once."""
    import subprocess
    import sys

    code = "import sys, memtok, memtok.cli; memtok.cli.cli.main(['--help'], standalone_mode=False); " \
           "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]; print(loaded); sys.exit(bool(loaded))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert p.returncode == 0 and "Commands:" in p.stdout, (p.stdout[-200:], p.stderr[-800:])
