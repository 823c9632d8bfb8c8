"""`kernels=auto|triton|torch`: what each resolves to, and the one-line exit 2 where Triton cannot run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from posttrain.devices import resolve_kernels
from posttrain.errors import UserError


def test_auto_is_torch_without_a_gpu_even_with_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_kernels("auto", "cpu") == "torch"
    assert resolve_kernels("auto", "auto") == "torch"  # no CUDA on this machine
    assert resolve_kernels("torch", "cpu") == "torch"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_kernels("triton", "cpu") == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(UserError, match=r"^kernels=triton needs a GPU \(CUDA or ROCm\); set TRITON_INTERPRET=1"):
        resolve_kernels("triton", "cpu")


def test_triton_missing(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(sys.modules, "triton", None)  # importlib.util.find_spec now reports it absent
    with pytest.raises(UserError, match=r"^kernels=triton needs the triton package"):
        resolve_kernels("triton", "cpu")
    assert resolve_kernels("auto", "cpu") == "torch"


def test_unknown_value():
    with pytest.raises(UserError, match="kernels must be one of auto, triton, torch, got 'fast'"):
        resolve_kernels("fast", "cpu")


def test_cli_rejects_triton_without_a_gpu_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(CI="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "posttrain.cli", "run", "stage=rlve", "kernels=triton", f"run.root={tmp_path / 'r'}"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: kernels=triton needs a GPU (CUDA or ROCm); set TRITON_INTERPRET=1 to run the kernels in Triton's "
        "CPU interpreter"
    ]
    assert not (tmp_path / "r").exists()
