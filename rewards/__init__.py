"""Everything that turns a completion into a number: math, code, shaping, instruction following, judges.

Every reward follows `posttrain.rewards.base.Reward`: `(prompts, completions, **columns) -> RewardOutput`,
and is constructible by name with `make_reward` (a registered name, or a user's function as
`file.py:function` or `module:function`); `build_reward(RewardsConfig(...))` builds a stage's whole reward.
Heavy modules (torch-based reward models, judges) are imported only when first used, so grading workers
stay light.
"""

from posttrain.rewards.base import RewardOutput, available_rewards, make_reward, register_reward
from posttrain.rewards.config import RewardsConfig, RewardSpec, build_reward
from posttrain.rewards.math_grading import MathReward, grade_pairs, math_equal
from posttrain.rewards.sandbox import CodeResult, run_code

__all__ = [
    "CodeResult",
    "MathReward",
    "RewardOutput",
    "RewardSpec",
    "RewardsConfig",
    "available_rewards",
    "build_reward",
    "grade_pairs",
    "make_reward",
    "math_equal",
    "register_reward",
    "run_code",
]
