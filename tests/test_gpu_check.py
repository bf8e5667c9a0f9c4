"""`make gpu-check` (scripts/gpu_check.py) as far as a CPU can take it: the preflight's one-line
refusal, a verdict for every step, and the steps a CPU cannot run named as not checked."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_a_gpu_that_torch_cannot_use_fails_in_one_line(gpu_check, tmp_path, monkeypatch):
    """nvidia-smi sees a GPU, torch has no CUDA (a CPU build; made so on a GPU machine too): one line,
    before any step."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    with pytest.raises(SystemExit) as refused:
        gpu_check.preflight()
    message = str(refused.value.code)
    assert message.startswith("gpu-check: FAIL: nvidia-smi sees GPU 0: NVIDIA H100") and "has no CUDA" in message
    assert "\n" not in message


def test_without_a_gpu_the_cuda_steps_are_named_as_not_checked(gpu_check, tmp_path):
    plan = gpu_check.steps(tmp_path, cuda=False)
    cuda_only = [s for s in plan if s.cuda_only]
    assert cuda_only and len(cuda_only) < len(plan)
    assert all(gpu_check.run(s, False, None, {}).startswith("SKIP (needs CUDA: not checked") for s in cuda_only)
    assert all("cuda" not in s.argv for s in plan if not s.cuda_only)  # the others run on this CPU
    assert sum(s.limit_s for s in gpu_check.steps(tmp_path, cuda=True)) <= gpu_check.LIMIT_S < 480  # one call


def test_the_device_suite_names_test_modules_that_exist(gpu_check):
    root = SCRIPT.parent.parent
    assert gpu_check.DEVICE_SUITE and all((root / m).is_file() for m in gpu_check.DEVICE_SUITE)


def test_on_cuda_a_step_not_checked_fails_the_run_unless_allowed(gpu_check):
    verdicts = ["PASS (3 s)", "SKIP (no bitsandbytes here: not checked)"]
    assert gpu_check.overall(verdicts, cuda=False, allow_skip=False) == ("gpu-check: PASS: 1 passed, 0 failed, "
                                                                         "1 not checked", 0)
    line, code = gpu_check.overall(verdicts, cuda=True, allow_skip=False)
    assert code == 1 and line.startswith("gpu-check: FAIL") and "GPU_CHECK_ALLOW_SKIP=1" in line
    assert gpu_check.overall(verdicts, cuda=True, allow_skip=True)[1] == 0
    assert gpu_check.overall(["FAIL (exit 1 after 2 s; the log says why)"], cuda=False, allow_skip=True)[1] == 1


def test_the_train_start_step_trains_a_start_on_this_machine(gpu_check, tmp_path):
    step = next(s for s in gpu_check.steps(tmp_path, cuda=False) if s.name.startswith("train-start"))
    with open(tmp_path / "log", "w") as log:
        assert gpu_check.run(step, False, log, dict(os.environ)).startswith("PASS"), (tmp_path / "log").read_text()[-800:]
    assert (tmp_path / "train-start" / "start.safetensors").is_file()


def test_every_step_ends_in_a_verdict(gpu_check, tmp_path):
    """A step passes only by exiting 0 within its limit; its output goes to the log, not the screen."""
    def step(code: str, limit: int = 30):
        return gpu_check.Step("s", [sys.executable, "-c", code], limit)

    with open(tmp_path / "log", "w") as log:
        verdicts = [gpu_check.run(step("print('figures')"), False, log, {}),
                    gpu_check.run(step("raise SystemExit(3)"), False, log, {}),
                    gpu_check.run(step("import time; time.sleep(5)", limit=1), False, log, {})]
    assert verdicts[0].startswith("PASS") and verdicts[1].startswith("FAIL (exit 3")
    assert verdicts[2] == "FAIL (over its 1 s)"
    assert "figures" in (tmp_path / "log").read_text()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads a process's state from Linux's /proc")
def test_a_step_over_its_limit_fails_and_is_killed_with_its_children(gpu_check, tmp_path):
    """pytest -n starts workers, a bench may start processes: the limit ends them all, not only the first."""
    import time

    marker = tmp_path / "child.pid"
    child = f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
            f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    with open(tmp_path / "log", "w") as log:
        verdict = gpu_check.run(gpu_check.Step("sleeps", [sys.executable, "-c", child], 2), False, log, dict(os.environ))
    assert verdict == "FAIL (over its 2 s)"
    stat = Path(f"/proc/{int(marker.read_text())}/stat")
    for _ in range(50):  # killed: gone, or a zombie (state Z) until whoever adopted it reaps it
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the step's child outlived its limit: {stat.read_text()}")
