"""Stage 5, behavioural RLHF/RLAIF (ZAYA1: 384 steps): GRPO on chat prompts, rewarded by a reward model whose
score counts only when an instruction-following checker passes, with no length reward.

The RL composition (posttrain.rl.stage) with its defaults in configs/stages/rlhf.yaml: prompts from the builtin
instruction-following set (`builtin:instructions`, IFEval ids and kwargs per row) or any chat dataset in
problems.datasets; the reward is `rewards.*` (the gated reward model by default, an LLM judge or any weighted
sum as alternatives, docs/rlhf.md). A sample counts as correct when the checker passes (rewards.correct_by), so
accuracy and the before/after pass@1 are the checker's pass rate. The reward model at `<run.root>/rm/final` is
trained first (stage=rm) when it does not exist. KL to the starting model and response length are reported, to
show a reward hack (longer and longer answers) if it happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.rl.stage import RLStage


def reward_model_paths(cfg: Any) -> list[str]:
    """Every reward model the rewards config loads (its components and its gate)."""
    specs = [*cfg.rewards.components, *([cfg.rewards.gate] if cfg.rewards.gate is not None else [])]
    return [str(s.kwargs["path"]) for s in specs if s.name == "reward_model" and "path" in s.kwargs]


class RLHF(RLStage):
    name = "rlhf"
    previous = "mathcode_phase2"  # the policy continues the pipeline; the reward model is a side branch (rm)

    def needs(self, cfg: Any) -> list[tuple[str, str]]:
        """The default reward model (`<run.root>/rm/final`) is trained by stage=rm when missing."""
        default = str(Path(cfg.run.root) / "rm" / "final")
        return [("rm", default)] if default in reward_model_paths(cfg) else []

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        from posttrain.rewards.compose import check_ready
        from posttrain.rewards.config import build_reward

        if not any(s.name == "reward_model" for s in cfg.rewards.components):
            check_ready(build_reward(cfg.rewards, canary=False))  # e.g. a judge endpoint that does not answer

    def prepare(self, cfg: Any):
        from posttrain.models import check_model_path

        for path in reward_model_paths(cfg):  # the default one was built by now (needs); yours must exist
            check_model_path(path)
        return super().prepare(cfg)
