"""The range of rewards a rewards config can give, known before any model runs.

`rl.advantage=maxrl` divides by the group's mean reward, so it needs rewards >= 0; a config that can go negative
is refused up front instead of failing mid-run. Builtin rewards have known ranges; any other reward (a plugin's,
or a `file.py:function`) may declare `score_range = (low, high)` on its class or function, and is otherwise
taken to be unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

UNBOUNDED = (-math.inf, math.inf)
RANGES: dict[str, tuple[float, float]] = {
    "math": (0.0, 1.0),
    "code": (0.0, 1.0),
    "format": (0.0, 1.0),
    "ifeval": (0.0, 1.0),
    "repetition": (0.0, 1.0),
    "overlong": (-1.0, 0.0),
    "judge": (0.0, 1.0),
    "pairwise_judge": (0.0, 1.0),
    "reward_model": UNBOUNDED,
}


def _field(spec: Any, name: str, default: Any = None) -> Any:
    return spec.get(name, default) if isinstance(spec, Mapping) else getattr(spec, name, default)


def spec_range(spec: Any) -> tuple[float, float]:
    """(low, high) of one `{name, weight, kwargs}` spec, weight applied."""
    name = str(_field(spec, "name"))
    low, high = RANGES.get(name) or _declared(name)
    if name == "reward_model" and (_field(spec, "kwargs") or {}).get("sigmoid"):
        low, high = 0.0, 1.0  # squashed
    weight = float(_field(spec, "weight", 1.0))
    return (weight * low, weight * high) if weight >= 0 else (weight * high, weight * low)


def _declared(name: str) -> tuple[float, float]:
    from posttrain.rewards.base import _REGISTRY, _load_builtins
    from posttrain.rewards.user_function import resolve

    if ":" in name:
        try:
            target = resolve(name)[1]
        except Exception:
            return UNBOUNDED
    else:
        _load_builtins()
        target = _REGISTRY.get(name)
    return tuple(getattr(target, "score_range", UNBOUNDED))


def _components_floor(config: Any) -> float:
    """Lowest weighted sum the components of a `RewardsConfig` can give, before gate and shaping."""
    return sum(spec_range(c)[0] for c in config.components)


def gate_error(config: Any) -> str | None:
    """A gate gives closed (failing) samples 0; components that can score below 0 would then pay a sample that
    passes the gate less than one that fails it, and RL would learn to fail. None when the gate is sound."""
    if getattr(config, "gate", None) is None:
        return None
    floor = _components_floor(config)
    if floor >= 0:
        return None
    return (
        f"rewards.gate gives failing samples 0, but rewards.components can score as low as {floor:g}, so a sample "
        "that passes the gate could earn less than one that fails it; bound them at 0 (reward_model: "
        "kwargs.sigmoid=true)"
    )


def reward_floor(config: Any) -> float:
    """Lowest reward a `RewardsConfig` (as `build_reward` assembles it) or a single spec can give."""
    if not hasattr(config, "components"):
        return spec_range(config)[0]
    floor = _components_floor(config)
    if config.gate is not None:
        floor = min(floor, 0.0)  # a closed gate gives 0
    if config.shaping.overlong_max_length > 0:
        floor += min(0.0, -config.shaping.overlong_weight)
    return floor
