"""bench/gpu_check.sh: its CPU mode end to end, its exit codes, and its tokens/s arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gpu_check(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # main(["--cpu"]) sets it; restored after the test
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_cases(gpu_check, monkeypatch, tolerance=None):
    """bench/kernels.py with one tiny case per kernel (and optionally impossible tolerances)."""
    bench = gpu_check.load_bench_kernels()
    monkeypatch.setitem(bench.LOGPROB_SHAPES, "small", [(5, 16, 40, torch.float32, 1.0)])
    monkeypatch.setitem(bench.MOE_SHAPES, "small", [(9, 16, 16, 2, 0.3, torch.float32)])
    if tolerance is not None:
        monkeypatch.setitem(bench.TOL, torch.float32, {"nats": tolerance, "rel": tolerance})
    monkeypatch.setattr(gpu_check, "load_bench_kernels", lambda: bench)


def table(output: str) -> dict[str, list[str]]:
    """part -> statuses, from the printed table."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines()[2:]:
        rows.setdefault(line.split()[0], []).append(line.split()[-1])
    return rows


def test_cpu_mode_passes_and_prints_one_row_per_check(gpu_check, monkeypatch, capsys):
    small_cases(gpu_check, monkeypatch)
    assert gpu_check.main(["--cpu", "--skip-rl"]) == 0
    assert table(capsys.readouterr().out) == {"logprobs": ["ok"], "moe": ["ok"], "model": ["ok"], "time": ["ok"]}


def test_a_correctness_failure_exits_non_zero(gpu_check, monkeypatch, capsys):
    """Nothing computed in fp32 equals its float64 oracle exactly, so a zero tolerance must fail both kernels."""
    small_cases(gpu_check, monkeypatch, tolerance=0.0)
    assert gpu_check.main(["--cpu", "--skip-rl"]) == 1
    rows = table(capsys.readouterr().out)
    assert rows["logprobs"] == ["FAIL"] and rows["moe"] == ["FAIL"] and rows["model"] == ["ok"]


def test_without_a_gpu_the_gpu_mode_exits_2(gpu_check, capsys):
    assert not torch.cuda.is_available()
    assert gpu_check.main([]) == 2
    assert capsys.readouterr().err.startswith("error: no GPU visible to torch; run with --cpu")


def test_throughput_leaves_out_the_first_step(gpu_check, tmp_path):
    steps = [
        {"step": 0, "kept": 3},
        {"step": 1, "time/step": 2.0, "time/generate": 1.0, "generate_tokens_per_s": 100.0, "time/learn": 0.5},
        {"step": 2, "time/step": 4.0, "time/generate": 2.0, "generate_tokens_per_s": 50.0, "time/learn": 1.0},
        {"step": 3, "time/step": 6.0, "time/generate": 3.0, "generate_tokens_per_s": 30.0, "time/learn": 2.0},
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(map(json.dumps, steps)))
    # steps 2 and 3: 100 + 90 tokens in 10 s of steps, 5 s of generation; learning 1.5 s per step
    assert gpu_check.throughput(metrics) == "19 tok/s per step (generate 38 tok/s, learn 1.50 s/step)"


@pytest.mark.slow
def test_gpu_check_script_cpu_mode_end_to_end():
    """The real script: installs nothing here (all present), kernels in the interpreter, RL steps on CPU."""
    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rows = table(done.stdout)
    assert rows == {"logprobs": ["ok", "ok"], "moe": ["ok", "ok"], "model": ["ok"], "time": ["ok"], "rl": ["ok"]}
    rl_line = next(line for line in done.stdout.splitlines() if line.startswith("rl "))
    assert "engine hf" in rl_line and " tok/s per step" in rl_line
