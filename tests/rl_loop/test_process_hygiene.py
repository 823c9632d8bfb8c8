"""No process of a run outlives it: after SIGKILL of `posttrain run`, its Ray session goes too."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import cli_env as env
from tests.rl_loop.conftest import TINY

pytestmark = pytest.mark.slow


def session_of(processes: list[psutil.Process]) -> str:
    for process in processes:
        try:
            match = re.search(r"session_\d{4}-\d\d-\d\d_[\d_-]+", " ".join(process.cmdline()))
        except psutil.Error:
            continue
        if match:
            return match.group(0)
    raise AssertionError("no Ray session among the run's processes")


def test_sigkill_of_a_run_leaves_no_ray_process_behind(sft_model, tmp_path):
    args = [*TINY, f"model.path={sft_model}", f"run.root={tmp_path}", "trainer.max_steps=10000", "eval.num_samples=2"]
    run = subprocess.Popen(
        [sys.executable, "-m", "posttrain.cli", "run", *args],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the test kills this one process, not its group: as `kill -9 <pid>` would
    )
    try:
        metrics = tmp_path / "rlve" / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while not (metrics.is_file() and metrics.read_text().strip()):  # Ray is up once a step is logged
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        session = session_of(psutil.Process(run.pid).children(recursive=True))
        everyone = psutil.process_iter(["cmdline"])
        ours = [p for p in everyone if p.pid != run.pid and session in " ".join(p.info["cmdline"] or [])]
    finally:  # whatever happened above, the run must not outlive the test
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    cmdlines = [" ".join(p.info["cmdline"] or []) for p in ours]
    # the dashboard and runtime-env agents that used to be left behind, and the reaper that now takes them down
    for part in ("dashboard/agent.py", "runtime_env/agent/main.py", "posttrain.rollout.reaper"):
        assert any(part in line for line in cmdlines), (part, cmdlines)
    _, alive = psutil.wait_procs(ours, timeout=30)
    assert not alive, [" ".join(p.cmdline())[:120] for p in alive if p.is_running()]
