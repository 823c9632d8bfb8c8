"""The learner's input: plain tensors for a set of sampled sequences, independent of how they were produced.

Layout: row i is prompt_i + completion_i, right-padded to L. Per-token tensors are [B, L] and aligned with
`input_ids`: position t holds the value for token t (so log-prob at t is log π(input_ids[t] | tokens < t)).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from posttrain.rl.advantages import compute_advantages


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, L] long, right-padded
    attention_mask: torch.Tensor  # [B, L] long, 1 on real tokens
    completion_mask: torch.Tensor  # [B, L] float, 1 on completion tokens that count in the loss
    behaviour_logprobs: torch.Tensor  # [B, L] float, the rollout engine's log-probs; 0 off the completion
    advantages: torch.Tensor | None  # [B] or [B, L] float; None: the learner computes them from `rewards`
    group_ids: torch.Tensor  # [B] long
    rewards: torch.Tensor | None = None  # [B] float
    temperatures: torch.Tensor | None = None  # [B] float, what each sample was drawn (and is scored) at; None = 1
    old_logprobs: torch.Tensor | None = None  # [B, L]; None: the learner recomputes them
    ref_logprobs: torch.Tensor | None = None  # [B, L]; None: the learner computes them when KL is on
    routing: torch.Tensor | None = None  # [B, L, layers] long, MoE classes from the rollout (−1 = route live)

    def __post_init__(self) -> None:
        size, length = self.input_ids.shape
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if value.shape[0] != size:
                raise ValueError(f"TrainBatch.{f.name} has {value.shape[0]} rows, input_ids has {size}")
            if value.dim() >= 2 and value.shape[1] != length:
                raise ValueError(f"TrainBatch.{f.name} has width {value.shape[1]}, input_ids has {length}")

    @classmethod
    def from_lists(
        cls,
        prompt_ids: Sequence[Sequence[int]],
        completion_ids: Sequence[Sequence[int]],
        behaviour_logprobs: Sequence[Sequence[float]],
        rewards: Sequence[float],
        group_ids: Sequence[int],
        *,
        pad_token_id: int,
        advantage: str | None = "grpo",
        advantage_kwargs: dict | None = None,
        advantages: Sequence[float] | None = None,
        temperatures: Sequence[float] | None = None,
    ) -> TrainBatch:
        """Pad python lists (as the fleet returns them) into a batch. Advantages are given explicitly, computed
        from `rewards` by the estimator named `advantage`, or (advantage=None) left to the learner."""
        sizes = {len(prompt_ids), len(completion_ids), len(behaviour_logprobs), len(rewards), len(group_ids)}
        if len(sizes) != 1:
            raise ValueError("prompt_ids, completion_ids, behaviour_logprobs, rewards and group_ids differ in length")
        if not prompt_ids:
            raise ValueError("a TrainBatch needs at least one sample")
        width = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True))
        size = len(prompt_ids)
        input_ids = torch.full((size, width), pad_token_id, dtype=torch.long)
        attention = torch.zeros(size, width, dtype=torch.long)
        completion = torch.zeros(size, width)
        behaviour = torch.zeros(size, width)
        for i, (prompt, comp, logps) in enumerate(zip(prompt_ids, completion_ids, behaviour_logprobs, strict=True)):
            if len(logps) != len(comp):
                raise ValueError(f"sample {i}: {len(comp)} completion tokens but {len(logps)} behaviour log-probs")
            if not prompt:
                raise ValueError(f"sample {i}: empty prompt (the first completion token needs a context)")
            start, end = len(prompt), len(prompt) + len(comp)
            input_ids[i, :end] = torch.tensor([*prompt, *comp], dtype=torch.long)
            attention[i, :end] = 1
            completion[i, start:end] = 1
            behaviour[i, start:end] = torch.tensor(logps, dtype=torch.float32)
        rewards_t = torch.tensor(rewards, dtype=torch.float32)
        groups_t = torch.tensor(group_ids, dtype=torch.long)
        if advantages is not None:
            adv = torch.tensor(advantages, dtype=torch.float32)
        elif advantage is not None:
            adv = compute_advantages(advantage, rewards_t, groups_t, **(advantage_kwargs or {}))
        else:
            adv = None
        temps = torch.tensor(temperatures, dtype=torch.float32) if temperatures is not None else None
        return cls(input_ids, attention, completion, behaviour, adv, groups_t, rewards=rewards_t, temperatures=temps)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def _map(self, fn) -> TrainBatch:
        return replace(self, **{f.name: None if (v := getattr(self, f.name)) is None else fn(v) for f in fields(self)})

    def select(self, index: torch.Tensor | Sequence[int]) -> TrainBatch:
        index = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t[index.to(t.device)])

    def to(self, device: torch.device | str) -> TrainBatch:
        return self._map(lambda t: t.to(device))

    def split(self, parts: int) -> list[TrainBatch]:
        """`parts` consecutive slices of near-equal size (sizes differ by at most one; none is empty)."""
        if not 1 <= parts <= self.size:
            raise ValueError(f"cannot split a batch of {self.size} into {parts} parts")
        bounds = [round(k * self.size / parts) for k in range(parts + 1)]
        return [self.select(range(lo, hi)) for lo, hi in itertools.pairwise(bounds)]

    def scoring_temperatures(self) -> torch.Tensor:
        """[B] temperatures the log-probs are taken at."""
        return self.temperatures if self.temperatures is not None else torch.ones(self.size)

    def token_advantages(self) -> torch.Tensor:
        """Advantages as [B, L]: per-sequence advantages are broadcast over the tokens."""
        if self.advantages is None:
            raise ValueError("this batch has no advantages yet (the learner computes them from its rewards)")
        if self.advantages.dim() == 1:
            return self.advantages[:, None].expand_as(self.completion_mask)
        return self.advantages
