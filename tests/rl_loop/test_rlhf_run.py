"""`posttrain run stage=rlhf` end to end: the reward model trained on demand, the checker-gated reward, the
behavioural metrics (checker pass rate per instruction type, reward-model score, length, KL to the start), resume,
and bad input."""

from __future__ import annotations

import json

import pytest

from posttrain.cli import main
from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import posttrain

pytestmark = pytest.mark.slow
TOY = [
    "stage=rlhf", "model.path=zaya-tiny", "logging.progress=off", "rollout.backend=local", "rl.prompts_per_step=2",
    "rl.group_size=4", "rollout.max_new_tokens=16", "eval.max_new_tokens=16", "eval.num_samples=4",
    "eval.pass_k=2", "trainer.save_every=1", "rm.trainer.max_steps=3", "rm.data.num_train=48", "rm.eval.num_samples=4",
]  # fmt: skip


def test_rlhf_trains_its_reward_model_reports_behaviour_and_resumes(tmp_path):
    first = posttrain(*TOY, f"run.root={tmp_path}", "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"{tmp_path / 'rm' / 'final'} does not exist: running stage 'rm' first" in first.stdout
    assert json.loads((tmp_path / "rm" / "summary.json").read_text())["steps"] == 3
    records = read_metrics(tmp_path / "rlhf" / "metrics.jsonl")
    for record in records:
        assert record["learn/kl_start"] >= 0 and record["response_length"] > 0  # KL to the start, length
        assert "instructions/reward_model/raw_mean" in record  # the reward model's score
        assert "instructions/ifeval/pass" in record and any(k.startswith("instructions/ifeval/") for k in record)
        # a sample is correct when the checker passes (and the repetition canary did not zero it): accuracy is the
        # checker's pass rate on this step's samples
        if record["repetition/zeroed"] == 0:
            assert record["accuracy"] == pytest.approx(record["instructions/ifeval/pass"])
    summary = json.loads((tmp_path / "rlhf" / "summary.json").read_text())
    report = summary["comparison"]["data:instructions"]
    assert report["reward"]["before"] is not None and report["length"]["after"] is not None

    resumed = posttrain(*TOY, f"run.root={tmp_path}", "trainer.max_steps=3", "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "running stage 'rm'" not in resumed.stdout  # the reward model exists now
    assert [r["step"] for r in read_metrics(tmp_path / "rlhf" / "metrics.jsonl")] == [1, 2, 3]


RAW_LOGIT = "rewards.components=[{name: reward_model, kwargs: {path: rm}}]"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rewards.components=[{name: reward_model, kwargs: {path: /no/such/rm, sigmoid: true}}]"], "is neither"),
        (["rewards.components=[{name: judge, kwargs: {base_url: 'http://127.0.0.1:9/v1', model: x}}]"], "judge"),
        # a raw logit under the checker gate: a passing sample could earn less than a failing one's 0
        ([RAW_LOGIT], "rewards.gate gives failing samples 0"),
        (["rl.advantage=maxrl", "rewards.gate=null", RAW_LOGIT], "maxrl needs rewards >= 0"),
    ],
)
def test_bad_rewards_are_one_line_before_any_work(overrides, message, tmp_path, capsys):
    code = main(["run", *TOY, f"run.root={tmp_path}", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "rlhf").exists()
