"""The RL loop reports to the `logging.report_to` trackers exactly what it writes to metrics.jsonl."""

from __future__ import annotations

import pytest

from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import TINY, posttrain
from tests.test_trackers import tensorboard_scalars

pytestmark = pytest.mark.slow


def test_rlve_sends_every_numeric_metric_to_tensorboard(sft_model, tmp_path):
    result = posttrain(
        *TINY,
        f"model.path={sft_model}",
        "trainer.max_steps=2",
        "logging.report_to=[tensorboard]",
        f"run.root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "rlve"
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    expected: dict[str, dict[int, float]] = {}
    for record in records:
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                expected.setdefault(key, {})[record["step"]] = value
    board = tensorboard_scalars(run_dir / "tensorboard")
    assert {"reward/mean", "accuracy", "learn/loss"} <= board.keys()
    assert board.keys() == expected.keys()
    for key, by_step in expected.items():
        assert board[key] == pytest.approx(by_step, rel=1e-6), key  # TensorBoard stores float32
