"""Config for rewards, mounted by the main config under the key `rewards`.

Plain dataclasses with defaults (OmegaConf structured-config compatible). `build_reward` turns one into a
single callable: the weighted sum of `components`, optionally gated (ZAYA1's behavioural reward: reward
model only when the instruction checker passes), plus DAPO's overlong penalty, and finally zeroed by the
LZ77 repetition canary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posttrain.rewards.base import Reward
from posttrain.rewards.compose import Gate, WeightedSum
from posttrain.rewards.sandbox import set_max_parallel
from posttrain.rewards.shaping import RepetitionCanary


@dataclass
class RewardSpec:
    """A registered reward by name (`posttrain.rewards.available_rewards()`), its weight and its kwargs."""

    name: str = "math"
    weight: float = 1.0
    ramp_steps: int = 0  # phase the weight in linearly over the first N training steps; 0 = full weight
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SandboxConfig:
    isolation: str = "auto"  # auto | bwrap | unshare | rlimits
    max_parallel: int = 0  # concurrent sandboxes in this process; 0 = one per CPU core


@dataclass
class ShapingConfig:
    repetition_threshold: float = 0.05  # zlib ratio below which the reward is 0; 0 disables the canary
    overlong_max_length: int = 0  # tokens; 0 disables the overlong penalty
    overlong_buffer: int = 0
    overlong_weight: float = 1.0
    mask_truncated: bool = False  # emit `overlong/mask` = 0 for truncated samples


@dataclass
class RewardsConfig:
    components: list[RewardSpec] = field(default_factory=lambda: [RewardSpec()])
    gate: RewardSpec | None = None  # components count only where this scores >= gate_threshold
    gate_threshold: float = 1.0
    correct_at: float = 1.0  # a sample counts as correct (accuracy, curricula, pass-rate filter) at this reward
    correct_by: RewardSpec | None = None  # ... of this reward instead of the trained one (RLHF: the checker)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


def build_reward(config: RewardsConfig, *, canary: bool = True) -> Reward:
    """The full reward a stage uses, from its `rewards` config. The RL loop applies the repetition canary to
    every scorer itself (`canary=False` here), so that it runs once."""
    if config.sandbox.max_parallel > 0:
        set_max_parallel(config.sandbox.max_parallel)
    reward: Reward = WeightedSum(list(config.components))
    if config.gate is not None:
        reward = Gate(reward, config.gate, threshold=config.gate_threshold)
    shaping = config.shaping
    if shaping.overlong_max_length > 0:
        overlong = {
            "name": "overlong",
            "weight": shaping.overlong_weight,
            "kwargs": {
                "max_length": shaping.overlong_max_length,
                "buffer": shaping.overlong_buffer,
                "mask_truncated": shaping.mask_truncated,
            },
        }
        reward = WeightedSum([reward, overlong])
    if canary and shaping.repetition_threshold > 0:
        guard = RepetitionCanary(threshold=shaping.repetition_threshold)
        reward = Gate(reward, guard, threshold=1.0, skip_closed=False, name="repetition")
    return reward
