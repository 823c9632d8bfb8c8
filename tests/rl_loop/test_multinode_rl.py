"""RL steps end to end on two Ray nodes (`ray start` twice on this machine); multinode_rl.py does the work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.metrics import read_metrics
from tests.conftest import cli_env as env

pytestmark = pytest.mark.slow


def test_rlve_steps_on_a_two_node_cluster_with_a_worker_per_node(tmp_path):
    repo = Path(__file__).parents[2]  # run as a module so that it can import the rollout test's helpers
    command = [sys.executable, "-m", "tests.rl_loop.multinode_rl", str(tmp_path)]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=560, env=env())
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["slots"] == 2  # one per node: two workers cannot share a node
    assert result["returncode"] == 0, result["stderr"]
    records = read_metrics(tmp_path / "rlve" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["time/generate"] > 0 and r["response_length"] > 0 for r in records)
    assert (tmp_path / "rlve" / "final" / "model.safetensors").is_file()
    assert result["leftover"] == []  # no Ray process of that cluster outlived the script
