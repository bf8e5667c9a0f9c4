"""`make gpu-check`: what only a CUDA GPU can show, in one call, with a verdict per step.

Run on a lent GPU machine with that machine's own Python and its torch and transformers; what its
image lacks travels in .whl/ (`make gpu-wheels`: zstandard and bitsandbytes for Python 3.12,
48 MB) and is installed first. A preflight names what is missing; each step then runs with a time
limit and a pass criterion, its whole output goes to $OUT/gpu-check.log (figures beside it,
$OUT defaults to gpu-check/), and each ends with one line, PASS, FAIL or SKIP; each runs in its own
process group, killed whole at its limit. On CUDA a step not checked fails the run (unless
GPU_CHECK_ALLOW_SKIP=1). Where torch has no CUDA the steps a CPU can run run the same way and the
others are named as not checked; where nvidia-smi sees a GPU that torch cannot use, it fails at once
in one line.

Expected time on one H100, derived, not measured: the fast suite on CUDA (tiny models, four
workers) under 3 minutes, each other step under half a minute (random weights, at most 32 rows of 16
tokens in Llama-3.1-8B's shape, or a tiny model); the limits add up to `LIMIT_S` (440 s), under the
480 s of one call with the wheels and the preflight.

    python scripts/gpu_check.py            # what make gpu-check runs
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ("torch", "transformers", "accelerate", "safetensors", "zstandard", "pytest", "xdist", "hypothesis")
VERSIONS = {"torch": "2.4", "transformers": "4.46"}  # pyproject.toml's floors


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    limit_s: int
    cuda_only: bool = False  # a CPU run names it as not checked
    needs: str = ""  # a module it cannot run without (bitsandbytes)


# `memtok train-start` on the device: a tiny model built on the spot (no weights travel), an unrolled
# start under bfloat16 autocast, its file written
TRAIN_START = ("import sys; from memtok.testing import build_tiny_model_dir; from memtok.cli import main; "
               "main(['train-start', '--model', build_tiny_model_dir(sys.argv[2] + '/tiny'), '--device', sys.argv[1], "
               "'--bf16', '--unroll', '2', '--steps', '4', '--batch-size', '4', '--width', '16', '--piece-tokens', "
               "'4', '12', '--text', 'pydoc-topics', '--out', sys.argv[2] + '/train-start'])")
LIMIT_S = 440  # the steps' limits together: with the wheels and the preflight, under 480 s of one call
# The suite's modules that exercise the device and need nothing the GPU machine's image lacks (no
# pyarrow, matplotlib or MiniLM there: stores, run folders' plots and teachers are the CPU's to test),
# as `make gpu-rehearsal` found them passing on the image's versions
DEVICE_SUITE = tuple(f"tests/test_{name}.py" for name in (
    "auto_k", "checkpoint", "cli", "codec", "decode_check", "devices", "families", "hostile_files", "identity",
    "interop", "memory_file", "optim", "plan", "restart", "score", "start_training_text", "verify"))


def steps(out: Path, cuda: bool) -> list[Step]:
    py, dev = sys.executable, "cuda" if cuda else "cpu"
    suite = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-n", "4" if cuda else "2",
             *DEVICE_SUITE]
    return [
        Step("the suite's device tests on the device", suite, 160),
        Step("batched decoding drifts less than SAFE_MARGIN in float32 (SmolLM2's shape)",
             [py, "bench/batched_vs_single.py", "--device", dev, "--random-weights", "--threads", "1",
              "--batch-sizes", "1,2,8,32" if cuda else "1,2,8", "--tokens", "16" if cuda else "8", "--check",
              "--json", str(out / "drift-float32.json")], 35),
        Step("batched drift in bfloat16, Llama-3.1-8B's shape (measured; memtok decodes 16 bits alone)",
             [py, "bench/batched_vs_single.py", "--device", dev, "--random-weights", "--shape", "llama-3.1-8b",
              "--model-dtype", "bfloat16", "--batch-sizes", "1,2,8,32", "--tokens", "16",
              "--json", str(out / "drift-llama8b-bfloat16.json")], 75, cuda_only=True),
        Step("round trips: bfloat16, --device auto, layers on the GPU with norm and head on the CPU",
             [py, "bench/gpu_round_trips.py", "--device", dev, "--json", str(out / "round-trips.json")], 35,
             cuda_only=True),
        Step("round trips in int8 and nf4 weights",
             [py, "bench/gpu_round_trips.py", "--device", dev, "--quantised", "--json",
              str(out / "round-trips-quantised.json")], 35, cuda_only=True, needs="bitsandbytes"),
        Step("input gradients agree with float32's and a finite difference",
             [py, "bench/input_gradients.py", "--device", dev, "--random-weights", "--check", "--kinds",
              "float32,bfloat16" + (",nf4" if cuda and _has("bitsandbytes") else ""),
              "--json", str(out / "input-gradients.json")], 35),
        Step("running out of memory halves the batch and every text ends as without",
             [py, "bench/oom_backoff.py", "--json", str(out / "oom-backoff.json")], 30, cuda_only=True),
        Step("train-start: an unrolled start under bfloat16 autocast, on the device",
             [py, "-c", TRAIN_START, dev, str(out)], 35),
    ]


def overall(verdicts: list[str], cuda: bool, allow_skip: bool) -> tuple[str, int]:
    """The run's last line and exit code. On a CUDA machine a step not checked counts as failed (a
    missing package would otherwise pass unseen) unless skips are allowed (GPU_CHECK_ALLOW_SKIP=1)."""
    failed = sum(v.startswith("FAIL") for v in verdicts)
    skipped = sum(v.startswith("SKIP") for v in verdicts)
    bad = failed + (skipped if cuda and not allow_skip else 0)
    why = " (on CUDA a step not checked fails: GPU_CHECK_ALLOW_SKIP=1 allows it)" if cuda and skipped and \
        not allow_skip else ""
    line = (f"gpu-check: {'FAIL' if bad else 'PASS'}: {len(verdicts) - failed - skipped} passed, {failed} failed, "
            f"{skipped} not checked{why}")
    return line, 1 if bad else 0


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gpus_seen() -> list[str]:
    """The GPUs nvidia-smi lists, if it is on PATH."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.startswith("GPU")]


def _install_wheels() -> None:
    """What the image lacks, from .whl/ (`make gpu-wheels`), into a folder of its own on the path."""
    ours = f"cp{sys.version_info.major}{sys.version_info.minor}"  # wheels for this Python only (a rehearsal's differs)
    wheels = sorted(w for w in (ROOT / ".whl").glob("*.whl") if ours in w.name or "-py3-none-" in w.name)
    if not wheels:
        return
    site = Path("/tmp/gpu-check-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def preflight() -> tuple[bool, list[str]]:
    """(whether torch has CUDA, what is missing); exits with one line where a GPU is seen that torch
    cannot use, or torch itself is missing."""
    missing = [m for m in NEEDED if not _has(m)]
    if "torch" in missing:
        sys.exit("gpu-check: FAIL: no torch here; it runs with the machine's own torch (>= 2.4)")
    import torch

    cuda, seen = torch.cuda.is_available(), _gpus_seen()
    if seen and not cuda:
        sys.exit(f"gpu-check: FAIL: nvidia-smi sees {seen[0]}, but torch {torch.__version__} has no CUDA: "
                 "run it with a CUDA build of torch")
    import transformers

    old = [f"{name} {module.__version__} (needs {VERSIONS[name]})" for name, module in
           (("torch", torch), ("transformers", transformers)) if _older(module.__version__, VERSIONS[name])]
    return cuda, missing + ([] if _has("bitsandbytes") else ["bitsandbytes"]) + old


def _older(version: str, floor: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("+")[0].split(".")[:2] if p.isdigit())

    return parts(version) < parts(floor)


def run(step: Step, cuda: bool, log, env: dict) -> str:
    """PASS, FAIL or SKIP, and why; the step's output goes to `log`."""
    if step.cuda_only and not cuda:
        return "SKIP (needs CUDA: not checked here)"
    if step.needs and not _has(step.needs):
        return f"SKIP (no {step.needs} here: not checked)"
    began = time.perf_counter()
    log.write(f"\n== {step.name}\n$ {' '.join(step.argv)}\n")
    log.flush()
    # its own process group, killed whole at its limit: pytest's workers and a bench's children with it
    proc = subprocess.Popen(step.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=step.limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"FAIL (over its {step.limit_s} s)"
    took = f"{time.perf_counter() - began:.0f} s"
    return f"PASS ({took})" if code == 0 else f"FAIL (exit {code} after {took}; the log says why)"


def main() -> int:
    out = Path(os.environ.get("OUT") or ROOT / "gpu-check")
    out.mkdir(parents=True, exist_ok=True)
    _install_wheels()
    cuda, missing = preflight()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "bench"),
                                                                     os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "MEMTOK_FUZZ_SCALE": "0.25",  # the fuzzing's scale in `make test-fast`
           **({"MEMTOK_TEST_DEVICE": "cuda"} if cuda else {})}
    import torch

    where = torch.cuda.get_device_name(0) if cuda else "no CUDA GPU: the steps a CPU can run"
    print(f"gpu-check: {where}; torch {torch.__version__}; missing: {', '.join(missing) or 'nothing'}", flush=True)
    verdicts = []
    with open(out / "gpu-check.log", "w") as log:
        for step in steps(out, cuda):
            verdict = run(step, cuda, log, env)
            verdicts.append(verdict)
            print(f"{verdict.split()[0]:4} {step.name} {' '.join(verdict.split()[1:])}", flush=True)
    line, code = overall(verdicts, cuda, os.environ.get("GPU_CHECK_ALLOW_SKIP") == "1")
    print(f"{line}; the log and figures are in {out}/")
    return code


if __name__ == "__main__":
    sys.exit(main())
