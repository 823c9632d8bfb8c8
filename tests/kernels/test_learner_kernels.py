"""The RL learner with kernels=triton (Triton interpreter on CPU) against kernels=torch: one update of a tiny
ZAYA through the fused LM-head log-probs and the grouped-GEMM experts lands on the torch path's weights."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("triton")

from posttrain.kernels.moe import is_zaya_experts
from posttrain.models import load_model
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from tests.rl.test_learner import bandit_batch, sampled_by


def test_one_update_with_triton_kernels_equals_the_torch_update():
    model, tok = load_model("zaya-tiny", seed=0)
    batch = sampled_by(model, bandit_batch(tok))
    cfg = RLConfig(optimizer="adamw", lr=1e-3, kl_metric=False)
    reference = Learner(copy.deepcopy(model), cfg, device="cpu", kernels="torch")
    fused = Learner(copy.deepcopy(model), cfg, device="cpu", kernels="triton")
    patched = [m for m in fused.model.modules() if is_zaya_experts(m)]
    assert patched and all("forward" in vars(m) for m in patched)  # the per-instance kernel patch

    expected, got = reference.step(batch), fused.step(batch)

    assert got["ratio_min"] == pytest.approx(1.0, abs=1e-5)  # the fused log-probs equal the behaviour's
    assert got["ratio_max"] == pytest.approx(1.0, abs=1e-5)
    for key in ("loss", "grad_norm", "entropy"):
        assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    # AdamW's first step stores (1 - beta1) * the clipped gradient: compare gradients there, since the update
    # itself (about lr * sign(g)) turns fp32 summation-order noise on near-zero gradients into lr-sized moves
    states = [opt.state for opt in reference.optimizers], [opt.state for opt in fused.optimizers]
    compared = 0
    for (name, want), have in zip(reference.model.named_parameters(), fused.model.parameters(), strict=True):
        mine = [s[want] for s in states[0] if want in s]
        theirs = [s[have] for s in states[1] if have in s]
        assert len(mine) == len(theirs) == 1, name
        g_torch, g_triton = mine[0]["exp_avg"], theirs[0]["exp_avg"]
        scale = g_torch.abs().max().item()
        torch.testing.assert_close(g_triton, g_torch, rtol=1e-4, atol=1e-5 * scale, msg=name)
        compared += int(scale > 0)
    assert compared > 10  # the gradients reached the LM head, attention and every layer's experts
