"""`posttrain run stage=rlve` with two data-parallel learner workers and the collective weight sync, end to end.

The oracle is the session's single-process reference run (same config and seed): each step draws the same
problems and samples the same rollouts (the fleets serve the same weights), so the learner metrics of every step
that trains must match the single-process learner's; the run must then checkpoint and export like any other.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import REFERENCE, posttrain

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sharding", ["none", "fsdp2"])
def test_two_learner_workers_with_collective_sync_reproduce_the_single_process_steps(reference, tmp_path, sharding):
    args = [a for a in REFERENCE if not a.startswith("trainer.max_steps=")]
    result = posttrain(
        *args, "trainer.max_steps=2", f"model.path={reference.sft_final}", f"run.root={tmp_path}",
        "rl.learner_workers=2", f"rl.learner_sharding={sharding}", "rollout.weight_sync=collective", "ray.num_cpus=4",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_dir = tmp_path / "rlve"
    records = read_metrics(run_dir / "metrics.jsonl")
    single = read_metrics(reference.dir / "metrics.jsonl")[:2]
    assert [r["step"] for r in records] == [1, 2]
    assert any(r["samples_trained"] for r in records)  # (with seed 3 the first step's groups are all dropped)
    for mine, theirs in zip(records, single, strict=True):
        for key in ("reward/mean", "accuracy", "samples_trained"):  # the same rollouts
            assert mine[key] == theirs[key], (mine["step"], key)
        if theirs["samples_trained"]:
            assert mine["learn/loss"] == pytest.approx(theirs["learn/loss"], abs=1e-5)
            assert mine["learn/grad_norm"] == pytest.approx(theirs["learn/grad_norm"], rel=1e-4)
            assert mine["learn/optimizer_steps"] == theirs["learn/optimizer_steps"]

    checkpoint = run_dir / "checkpoints" / "step-2"
    updates = sum(1 for r in records if r["samples_trained"])  # the learner's step count is its policy version
    assert torch.load(checkpoint / "learner.pt", weights_only=False)["step"] == updates
    final = load_file(str(run_dir / "final" / "model.safetensors"))
    assert all(torch.equal(final[k], v) for k, v in load_file(str(checkpoint / "policy" / "model.safetensors")).items())
    start = load_file(str(reference.sft_final / "model.safetensors"))
    assert any(not torch.equal(final[k], start[k]) for k in final)
    assert type(AutoModelForCausalLM.from_pretrained(run_dir / "final")).__name__ == "ZayaForCausalLM"
