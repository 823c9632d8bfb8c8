"""`posttrain run stage=all`: every available stage in pipeline order, each starting from the one before."""

from __future__ import annotations

import pytest
import yaml

from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import TINY, posttrain

pytestmark = pytest.mark.slow


def test_stage_all_runs_sft_then_rlve_from_its_final(tmp_path):
    result = posttrain(
        *[o.replace("stage=rlve", "stage=all") for o in TINY], f"run.root={tmp_path}", "model.path=zaya-tiny",
        "sft.trainer.max_steps=4", "sft.data.num_train=200", "rlve.trainer.max_steps=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sft, rlve = (yaml.safe_load((tmp_path / s / "config.yaml").read_text()) for s in ("sft", "rlve"))
    assert sft["model"]["path"] == "zaya-tiny" and sft["trainer"]["max_steps"] == 4
    # The plain model.path starts the pipeline; rlve continues from sft's output, not from the preset.
    assert rlve["model"]["path"] == str(tmp_path / "sft" / "final") and rlve["trainer"]["max_steps"] == 1
    assert [r["step"] for r in read_metrics(tmp_path / "sft" / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert [r["step"] for r in read_metrics(tmp_path / "rlve" / "metrics.jsonl")] == [1]
    assert (tmp_path / "rlve" / "final" / "model.safetensors").is_file()
    assert "running stage" not in result.stdout  # nothing was built on demand: the pipeline order did it
