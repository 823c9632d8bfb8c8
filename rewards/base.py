"""The reward interface every scorer in `posttrain.rewards` follows, and the registry configs name them by.

A reward is a callable `(prompts, completions, **columns) -> RewardOutput`. It scores a whole batch at once
(so that judges and sandboxes can parallelise) and sees every per-sample column of the dataset (gold
answers, tests, constraints) plus training progress (`step`, `max_steps`), because curricula and schedules
need to know where training is. Rewards never raise on model output: bad text scores 0.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from posttrain.errors import UserError


@dataclass
class RewardOutput:
    """One score per completion, plus metrics: scalars (batch summaries) or per-sample lists."""

    scores: list[float]
    metrics: dict[str, float | list[float]] = field(default_factory=dict)


class Reward(Protocol):
    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput: ...


_REGISTRY: dict[str, Callable[..., Reward]] = {}
# Modules whose rewards register themselves on import; loaded on first lookup so that importing
# `posttrain.rewards` (e.g. in a grading worker) does not pull in torch.
_BUILTIN_MODULES = ("math_grading", "code", "shaping", "ifeval", "compose", "reward_model", "judge")


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"posttrain.rewards.{module}")


def register_reward(name: str) -> Callable[[Callable[..., Reward]], Callable[..., Reward]]:
    """Decorator: make a reward class (or factory) constructible from config as `make_reward(name, **kwargs)`."""

    def decorate(factory: Callable[..., Reward]) -> Callable[..., Reward]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"reward {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_rewards() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def make_reward(name: str, **kwargs: Any) -> Reward:
    """Build a registered reward, or a user's function named `file.py:function` / `module:function`
    (`posttrain.rewards.user_function`); an unknown name is a `UserError` that suggests the closest one."""
    if ":" in name:
        from posttrain.rewards.user_function import UserFunctionReward

        return UserFunctionReward(name, **kwargs)
    if name not in _REGISTRY:
        _load_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(available_rewards())}"
        raise UserError(f"unknown reward {name!r}{hint}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise UserError(f"reward {name!r}: {exc}") from None


def per_sample(columns: dict[str, Any], name: str, n: int, default: Any = None) -> list[Any]:
    """A dataset column as a list of length n; a scalar (or a missing column) is broadcast to every sample."""
    value = columns.get(name, default)
    if isinstance(value, list | tuple) and len(value) == n:
        return list(value)
    return [value] * n


def as_text(value: Any) -> str:
    """Model output coerced to `str`: bytes are decoded leniently, None is empty, anything else is `str()`."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
