"""A run's failure paths through the real CLI: a broken env is quarantined mid-run and never drawn again; when
every env fails the run stops with one line naming the log; such a run does not block its own rerun."""

from __future__ import annotations

import pytest

from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import TINY, posttrain

pytestmark = pytest.mark.slow
BROKEN = "tests/envs/faulty_envs.py:Broken"


def test_a_broken_env_is_quarantined_and_the_run_goes_on(sft_model, tmp_path):
    result = posttrain(
        *TINY, f"model.path={sft_model}", f"run.root={tmp_path}", "trainer.max_steps=4", "eval.num_samples=0",
        f"envs.names=[add,{BROKEN}]", "envs.quarantine_after=3", "rl.prompts_per_step=8",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(tmp_path / "rlve" / "metrics.jsonl")
    assert records[0]["scorer_errors_dropped"] >= 3  # its error verdicts never became training signal
    assert "difficulty/broken_checker" in records[0]  # metrics name the env by its own name, not its file path
    assert not any("faulty_envs" in key for record in records for key in record)
    assert not any(r["scorer_errors"] for r in records[1:])  # quarantined: never drawn again
    assert all(r["pass_rate/add"] == r["accuracy"] for r in records[1:])


def test_when_every_env_fails_the_run_stops_with_one_line_and_can_be_rerun(sft_model, tmp_path):
    args = [*TINY, f"model.path={sft_model}", f"run.root={tmp_path}", "eval.num_samples=0", f"envs.names=[{BROKEN}]"]
    for _ in range(2):  # the failed run holds no checkpoint: the same command runs again, it is not refused
        result = posttrain(*args, "envs.quarantine_after=2")
        assert result.returncode == 1, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()  # a quarantine warning, then the failure on one line
        assert lines[-1].startswith("error: stage rlve failed: RuntimeError"), result.stderr
        assert "every env is failing" in lines[-1] and "error.log" in lines[-1]
        assert "Traceback" not in result.stderr
        log = tmp_path / "rlve" / "error.log"
        assert "Traceback" in log.read_text()
