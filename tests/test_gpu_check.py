"""`make gpu-check` (scripts/gpu_check.py) as far as a CPU can take it: the preflight's one-line
refusal, a verdict for every step, and the steps a CPU cannot run named as not checked."""

from __future__ import annotations

import importlib.util
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
    """nvidia-smi sees a GPU, torch (this CPU build) has no CUDA: one line, before any step."""
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
    assert sum(s.limit_s for s in gpu_check.steps(tmp_path, cuda=True)) < 600  # one call of a lent machine


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
