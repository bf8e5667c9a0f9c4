"""Where a figure came from: the software, the machine and its threads, and the commit of a
checkout, recorded beside every run's summary so that a number can be traced and made again."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when memtok runs from one


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_name() -> str:
    """The CPU's model name, as the kernel gives it, else the platform's word for it."""
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict:
    """The versions, threads, CPU and GPU this process computes with, and the commit of the checkout
    memtok runs from (None for an installed package)."""
    commit = _git("rev-parse", "HEAD") if (CHECKOUT / ".git").exists() else None
    return {"commit": commit,
            "uncommitted_changes": None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no")),
            "versions": {name: _version(name) for name in ("memtok", "torch", "transformers")},
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu": cpu_name(), "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
