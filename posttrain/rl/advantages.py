"""Advantage estimators over groups of rollouts that share a prompt.

Every estimator maps per-sample scalar rewards [B] and group ids [B] to per-sample advantages [B]; a
new one is one decorated function (`@register_advantage("name")`). Groups need not be contiguous.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from posttrain.registry import registrar

AdvantageFn = Callable[..., torch.Tensor]
ADVANTAGE_REGISTRY: dict[str, AdvantageFn] = {}


register_advantage = registrar(ADVANTAGE_REGISTRY, "advantage estimator")


def compute_advantages(name: str, rewards: torch.Tensor, group_ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """Look the estimator up by name and run it on float64 copies (group stats stay exact), returning float32."""
    if name not in ADVANTAGE_REGISTRY:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {', '.join(sorted(ADVANTAGE_REGISTRY))}")
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    group_ids = torch.as_tensor(group_ids)
    if rewards.shape != group_ids.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} must be equal 1-D")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite")
    return ADVANTAGE_REGISTRY[name](rewards, group_ids, **kwargs).to(torch.float32)


def group_stats(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (group sum, group size, group unbiased std) broadcast back to [B]."""
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=rewards.dtype).index_add_(0, inverse, rewards)
    means = sums / counts
    sq = torch.zeros(len(counts), dtype=rewards.dtype).index_add_(0, inverse, (rewards - means[inverse]) ** 2)
    std = torch.where(counts > 1, (sq / (counts - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    return sums[inverse], counts[inverse].to(rewards.dtype), std[inverse]


@register_advantage("grpo")
def grpo(rewards: torch.Tensor, group_ids: torch.Tensor, *, scale_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(r − mean_group) / (std_group + eps); `scale_std=False` keeps the centred reward (Dr.GRPO)."""
    sums, counts, std = group_stats(rewards, group_ids)
    centred = rewards - sums / counts
    return centred / (std + eps) if scale_std else centred


@register_advantage("maxrl")
def maxrl(rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """(r − r̄) / r̄ per group, for rewards ≥ 0 (e.g. pass/fail).

    Dividing by the group mean instead of the std weights hard prompts (few successes, small r̄) more
    strongly. A group with r̄ = 0 has no successes and so no signal: its advantages are 0, not NaN.
    """
    if (rewards < 0).any():
        raise ValueError("maxrl needs rewards >= 0: it divides by the group mean reward")
    sums, counts, _ = group_stats(rewards, group_ids)
    mean = sums / counts
    return torch.where(mean > eps, (rewards - mean) / mean.clamp(min=eps), torch.zeros_like(rewards))


@register_advantage("rloo")
def rloo(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """r_i minus the mean of the *other* rewards of its group; a group of one gets 0."""
    sums, counts, _ = group_stats(rewards, group_ids)
    others = (sums - rewards) / (counts - 1).clamp(min=1)
    return torch.where(counts > 1, rewards - others, torch.zeros_like(rewards))
