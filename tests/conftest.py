"""Shared helpers: run the real `posttrain` CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Triton reads TRITON_INTERPRET when a kernel (or triton.language itself) is first imported, so it is set for the
# whole session before anything can import triton: the kernel tests run on CPU tensors in its interpreter.
# `kernels=auto` still picks torch on a CPU; the interpreter is only ever used where a test asks for triton.
os.environ.setdefault("TRITON_INTERPRET", "1")
# No test reaches a real hub: in-process tests (which call `posttrain.cli.main` directly) are offline too.
# Set before anything imports huggingface_hub, which reads these once.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")

import pytest
import torch


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CI="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # One torch thread per process: two test workers already keep both cores busy, and spinning intra-op
    # threads on an oversubscribed CPU cost more than they give on these tiny models.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "posttrain.cli", *args],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_python(code: str, cwd: Path, *, how: str = "script", timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `code` as a user's plain program: a script file (`how="script"`), `python -c`, or fed on stdin."""
    argv, stdin = [sys.executable], None
    if how == "script":
        (cwd / "user_script.py").write_text(code)
        argv.append("user_script.py")
    elif how == "-c":
        argv += ["-c", code]
    else:
        argv.append("-")
        stdin = code
    return subprocess.run(
        argv, cwd=cwd, env=cli_env(), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_until_killed(*args: str, when: Path, timeout: float = 300) -> None:
    """Start `posttrain <args>` and SIGKILL it as soon as `when` exists; it must not have finished by then."""
    process = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", *args],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not when.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, which only contend with each other and with other
    test processes on a 2-core machine (one thread was ~100x faster than two on a busy box)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
