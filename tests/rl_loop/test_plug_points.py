"""The RL engine's plug points end to end through the CLI: a prompt dataset mixed with the env curriculum and
scored by a user's TRL-style reward file, LoRA in RL merged into final/, the in-process fleet, progress lines."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import TINY, posttrain

pytestmark = pytest.mark.slow


def test_dataset_and_env_mixture_with_a_user_reward_lora_and_the_local_fleet(sft_model, tmp_path):
    data = tmp_path / "sums.jsonl"
    sums = [(a, b) for a in range(20) for b in (1, 2)]
    rows = [{"prompt": f"{a}+{b}=? Answer in <answer></answer>.", "answer": str(a + b)} for a, b in sums]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = f"{{path: {data}, name: sums, weight: 1.0, reward: {{name: 'tests/rl_loop/exact_reward.py:exact'}}}}"
    result = posttrain(
        *TINY, f"model.path={sft_model}", f"run.root={tmp_path}", "trainer.max_steps=3", "eval.num_samples=4",
        f"problems.datasets=[{dataset}]", "rollout.backend=local", "model.lora.r=4", "rl.optimizer=adamw",
        "rl.param_groups=[]", "rl.lr=1e-2", "rl.kl_coef=0.05",  # KL to the base: the adapters disabled, no copy
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rlve step 1/3" in result.stdout and "rlve step 3/3" in result.stdout  # CI gets plain progress lines
    records = read_metrics(tmp_path / "rlve" / "metrics.jsonl")
    assert any("pass_rate/data:sums" in r for r in records) and any("pass_rate/add" in r for r in records)
    assert all(r["learn/kl_start"] >= 0 and "learn/kl_ref" in r for r in records if "learn/loss" in r)
    summary = json.loads((tmp_path / "rlve" / "summary.json").read_text())
    assert set(summary["comparison"]) == {"add", "data:sums"}  # both held-out sets, before and after

    final = tmp_path / "rlve" / "final"
    assert not (final / "adapter_config.json").exists()  # LoRA merged: a plain checkpoint
    assert type(AutoModelForCausalLM.from_pretrained(final)).__name__ == "ZayaForCausalLM"
    trained, start = load_file(str(final / "model.safetensors")), load_file(f"{sft_model}/model.safetensors")
    changed = {k for k in trained if not torch.equal(trained[k], start[k])}
    assert changed and all("self_attn" in k for k in changed)  # only LoRA's targets moved
    policy = tmp_path / "rlve" / "checkpoints" / "step-3" / "policy"
    assert (policy / "adapter_config.json").is_file()  # the checkpoint keeps the adapter, for an exact resume
