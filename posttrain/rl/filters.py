"""Batch filters applied between scoring and learning; pure functions, so the loop decides about refills."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def informative_groups(rewards: Sequence[float], group_ids: Sequence[int], *, atol: float = 1e-9) -> list[int]:
    """Indices of samples whose group has at least two distinct rewards (dynamic sampling, DAPO).

    A group whose rewards are all equal has zero advantage under every group-relative estimator, so it
    only dilutes the batch; the loop drops it and samples more prompts to refill.
    """
    if len(rewards) != len(group_ids):
        raise ValueError(f"{len(rewards)} rewards but {len(group_ids)} group ids")
    spread: dict[int, tuple[float, float]] = {}
    for reward, group in zip(rewards, group_ids, strict=True):
        low, high = spread.get(group, (reward, reward))
        spread[group] = (min(low, reward), max(high, reward))
    return [i for i, group in enumerate(group_ids) if spread[group][1] - spread[group][0] > atol]


def overlong_mask(completion_mask: torch.Tensor, truncated: Sequence[bool] | torch.Tensor) -> torch.Tensor:
    """Zero the loss mask of samples cut off by the token budget (DAPO's overlong filtering).

    A truncated answer's reward says little about its tokens; masking it keeps its group's baseline
    (advantages were computed before) but stops it from pushing the policy toward shorter or longer text.
    """
    truncated = torch.as_tensor(truncated, dtype=torch.bool, device=completion_mask.device)
    if truncated.shape != completion_mask.shape[:1]:
        raise ValueError(f"truncated has shape {tuple(truncated.shape)}, expected ({completion_mask.shape[0]},)")
    return completion_mask * (~truncated).to(completion_mask.dtype)[:, None]
