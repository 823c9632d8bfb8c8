"""Combine rewards: weighted sums and gates, buildable from config specs.

A spec is a mapping `{"name": <registered reward>, "weight": w, "kwargs": {...}}` (or a `RewardSpec`).
ZAYA1's behavioural-RL reward is a gate: the reward-model score counts only when the instruction-following
checker passes, e.g. `Gate(reward=reward_model, gate=ifeval, threshold=1.0)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from posttrain.rewards.base import Reward, RewardOutput, make_reward, register_reward


def _spec_fields(spec: Any) -> tuple[str, float, dict[str, Any]]:
    if isinstance(spec, Mapping):
        return spec["name"], float(spec.get("weight", 1.0)), dict(spec.get("kwargs") or {})
    return spec.name, float(spec.weight), dict(spec.kwargs or {})


def _ramp_steps(spec: Any) -> int:
    return int(spec.get("ramp_steps", 0) if isinstance(spec, Mapping) else getattr(spec, "ramp_steps", 0))


def ramped_weight(weight: float, ramp_steps: int, step: Any) -> float:
    """`weight` scaled linearly from 0 at step 0 to full at `ramp_steps` (training progress from the `step` column)."""
    if ramp_steps <= 0 or not isinstance(step, int | float):
        return weight
    return weight * min(1.0, max(0.0, float(step) / ramp_steps))


def build(spec: Any) -> Reward:
    """A reward from a spec; a reward instance passes through unchanged."""
    if callable(spec):
        return spec
    name, _, kwargs = _spec_fields(spec)
    return make_reward(name, **kwargs)


def check_ready(*rewards: Any) -> None:
    """Run each reward's start-up `check()` where it has one (judges probe their endpoint): a stage calls this
    on its built reward before any work, so an unreachable judge is one `UserError` line, not a mid-run failure."""
    for reward in rewards:
        probe = getattr(reward, "check", None)
        if callable(probe):
            probe()


def _prefixed(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key if key.startswith(f"{name}/") else f"{name}/{key}": value for key, value in metrics.items()}


@register_reward("weighted_sum")
class WeightedSum:
    """Σ weight_i · reward_i, with every component's metrics kept (and its raw scores under `<name>/scores`).
    A spec's `ramp_steps` phases its weight in over the first training steps (read from the `step` column)."""

    def __init__(self, components: Sequence[Any]) -> None:
        if not components:
            raise ValueError("weighted_sum needs at least one component")
        self.parts = []
        for index, spec in enumerate(components):
            if callable(spec):
                self.parts.append((f"r{index}", 1.0, 0, spec))
            else:
                name, weight, _ = _spec_fields(spec)
                self.parts.append((name, weight, _ramp_steps(spec), build(spec)))

    def check(self) -> None:
        check_ready(*(reward for _, _, _, reward in self.parts))

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        total = [0.0] * len(completions)
        metrics: dict[str, Any] = {}
        for name, base_weight, ramp_steps, reward in self.parts:
            out = reward(prompts, completions, **columns)
            weight = ramped_weight(base_weight, ramp_steps, columns.get("step"))
            total = [t + weight * s for t, s in zip(total, out.scores, strict=True)]
            metrics[f"{name}/weight"] = weight
            metrics.update(_prefixed(name, out.metrics))
            metrics[f"{name}/scores"] = list(out.scores)
        return RewardOutput(total, metrics)


@register_reward("gated")
class Gate:
    """`reward` where `gate` scores >= threshold, else `otherwise`. The reward is not computed for closed samples
    when `skip_closed` (saves reward-model/judge calls); its per-sample list metrics are then dropped, since they
    no longer cover the batch. The gate's metrics are reported under `name/`."""

    def __init__(
        self,
        reward: Any,
        gate: Any,
        *,
        threshold: float = 1.0,
        otherwise: float = 0.0,
        skip_closed: bool = True,
        name: str = "gate",
    ) -> None:
        self.reward, self.gate = build(reward), build(gate)
        self.threshold, self.otherwise, self.skip_closed, self.name = threshold, otherwise, skip_closed, name

    def check(self) -> None:
        check_ready(self.reward, self.gate)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        gate = self.gate(prompts, completions, **columns)
        open_ = [s >= self.threshold for s in gate.scores]
        keep = [i for i, o in enumerate(open_) if o or not self.skip_closed]
        sub_columns = {
            k: [v[i] for i in keep] if isinstance(v, list | tuple) and len(v) == len(completions) else v
            for k, v in columns.items()
        }
        inner = self.reward([prompts[i] for i in keep], [completions[i] for i in keep], **sub_columns)
        scores = [self.otherwise] * len(completions)
        for i, score in zip(keep, inner.scores, strict=True):
            scores[i] = score if open_[i] else self.otherwise
        partial = len(keep) != len(completions)
        metrics = {k: v for k, v in inner.metrics.items() if not (partial and isinstance(v, list))}
        metrics.update(_prefixed(self.name, gate.metrics))
        metrics[f"{self.name}/open"] = sum(open_) / len(open_) if open_ else 0.0
        return RewardOutput(scores, metrics)
