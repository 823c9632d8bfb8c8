"""Advantage estimators against hand-computed values; groups are deliberately interleaved."""

from __future__ import annotations

import statistics

import pytest
import torch

from posttrain.rl.advantages import ADVANTAGE_REGISTRY, compute_advantages, register_advantage

REWARDS = [1.0, 0.0, 3.0, 1.0, 0.0, 2.0, 0.0]
GROUPS = [7, 3, 7, 3, 7, 3, 9]  # interleaved groups, and a group of one


def by_group() -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r, g in zip(REWARDS, GROUPS, strict=True):
        out.setdefault(g, []).append(r)
    return out


def test_grpo_matches_python_statistics():
    got = compute_advantages("grpo", torch.tensor(REWARDS), torch.tensor(GROUPS)).tolist()
    groups = by_group()
    for value, r, g in zip(got, REWARDS, GROUPS, strict=True):
        members = groups[g]
        std = statistics.stdev(members) if len(members) > 1 else 0.0
        assert value == pytest.approx((r - statistics.mean(members)) / (std + 1e-4), abs=1e-5)


def test_grpo_without_std_scaling_is_centred_reward():
    got = compute_advantages("grpo", torch.tensor(REWARDS), torch.tensor(GROUPS), scale_std=False)
    groups = by_group()
    expected = [r - statistics.mean(groups[g]) for r, g in zip(REWARDS, GROUPS, strict=True)]
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_maxrl_divides_by_group_mean_and_zero_mean_groups_give_zero():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    got = compute_advantages("maxrl", rewards, groups).tolist()
    # group 0: mean 1/4 -> (1 - .25)/.25 = 3, (0 - .25)/.25 = -1; group 1: no success -> 0; group 2: all equal -> 0
    assert got == pytest.approx([3.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    assert all(torch.isfinite(torch.tensor(got)))


def test_maxrl_rejects_negative_rewards():
    with pytest.raises(ValueError, match=">= 0"):
        compute_advantages("maxrl", torch.tensor([-1.0, 1.0]), torch.tensor([0, 0]))


def test_rloo_uses_leave_one_out_baseline():
    got = compute_advantages("rloo", torch.tensor(REWARDS), torch.tensor(GROUPS)).tolist()
    groups = by_group()
    for value, r, g in zip(got, REWARDS, GROUPS, strict=True):
        members = list(groups[g])
        if len(members) == 1:
            assert value == 0.0
            continue
        members.remove(r)
        assert value == pytest.approx(r - statistics.mean(members), abs=1e-6)


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(KeyError, match="unknown advantage"):
        compute_advantages("nope", torch.tensor([1.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("grpo")(lambda r, g: r)
    assert {"grpo", "maxrl", "rloo"} <= set(ADVANTAGE_REGISTRY)


def test_non_finite_rewards_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        compute_advantages("grpo", torch.tensor([float("nan"), 1.0]), torch.tensor([0, 0]))
