"""`posttrain run stage=all`: every stage in pipeline order, each starting from the one before, then the
stage-by-stage table of held-out scores."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from posttrain.metrics import read_metrics
from posttrain.stagekit import pipeline
from tests.rl_loop.conftest import posttrain

pytestmark = pytest.mark.slow
TOY = [
    "stage=all", "logging.progress=off", "rl.prompts_per_step=4", "rl.group_size=4", "rollout.max_new_tokens=8",
    "rollout.backend=local", "eval.num_samples=2", "eval.pass_k=2", "eval.temperatures=[1.0]", "trainer.max_steps=1",
    "sft.trainer.max_steps=4", "sft.data.num_train=200", "ttc.candidates=4", "rm.trainer.max_steps=2",
    "rm.data.num_train=32", "rm.eval.num_samples=4", "rlhf.rollout.max_new_tokens=8",
]  # fmt: skip


def test_stage_all_runs_every_stage_from_the_one_before_and_ends_with_the_table(tmp_path):
    result = posttrain(*TOY, f"run.root={tmp_path}", "model.path=zaya-tiny", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    stages = pipeline()
    assert stages == ["sft", "warmup", "rlve", "mathcode_phase1", "mathcode_phase2", "rlhf"]
    configs = {s: yaml.safe_load((tmp_path / s / "config.yaml").read_text()) for s in stages}
    assert configs["sft"]["model"]["path"] == "zaya-tiny" and configs["sft"]["trainer"]["max_steps"] == 4
    for previous, stage in itertools.pairwise(stages):
        # the plain model.path starts the pipeline; every later stage continues from the one before
        assert configs[stage]["model"]["path"] == str(tmp_path / previous / "final")
        assert [r["step"] for r in read_metrics(tmp_path / stage / "metrics.jsonl")] == [1]
    assert configs["mathcode_phase2"]["ttc"]["checkpoint"] == str(tmp_path / "mathcode_phase1" / "final")
    # the pipeline order built every policy; only rlhf's reward model (a side branch) was built on demand
    assert [line for line in result.stdout.splitlines() if "running stage" in line] == [
        f"{tmp_path / 'rm' / 'final'} does not exist: running stage 'rm' first"
    ]
    table = json.loads((tmp_path / "pipeline.json").read_text())["greedy_pass@1"]
    assert list(table) == ["start", *stages]
    # every stage's held-out sets
    assert set(table["sft"]) == {"add", "multiply", "knights_knaves", "pyfunc", "data:instructions"}
    assert "held-out greedy pass@1 of every stage's output" in result.stdout
