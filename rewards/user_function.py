"""Rewards named by where they live: `my_rewards.py:score` (a file) or `my_pkg.rewards:score` (a module).

The function takes TRL's reward-function signature, `(prompts, completions, **columns)`, and returns one
float per completion (TRL's convention) or a `RewardOutput`. Completions reach it as `str`, whatever the
model produced; a return value that breaks the contract (wrong length, not a number, NaN or infinite) is a
`UserError` naming the function. The reward pickles by its name, so it reaches Ray workers and process
pools, which load the file again.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from posttrain.errors import UserError
from posttrain.rewards.base import RewardOutput, as_text
from posttrain.user_code import file_path, is_file_location, load_module


def is_function_name(name: str) -> bool:
    return ":" in name


def _split(name: str) -> tuple[str, str]:
    where, _, attribute = name.rpartition(":")
    if not where or not attribute:
        raise UserError(f"reward {name!r}: expected <file.py>:<function> or <module>:<function>")
    return where, attribute


def resolve(name: str) -> tuple[str, Callable[..., Any]]:
    """(the name with an absolute file path, the function it names); every failure is a `UserError`."""
    where, attribute = _split(name)
    module = load_module(where, f"reward {name!r}")
    canonical = f"{file_path(where)}:{attribute}" if is_file_location(where) else name
    function = getattr(module, attribute, None)
    if function is None:
        public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        close = difflib.get_close_matches(attribute, public, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"reward {name!r}: {where!r} has no function {attribute!r}{hint}")
    if not callable(function):
        raise UserError(f"reward {name!r}: {attribute!r} in {where!r} is a {type(function).__name__}, not a function")
    return canonical, function


def _score(name: str, index: int, value: Any) -> float:
    if hasattr(value, "item") and not isinstance(value, list | tuple):  # numpy / torch scalars
        value = value.item()
    if not isinstance(value, numbers.Real):
        hint = " (rewards are numbers; give 0.0 for samples a function cannot score)" if value is None else ""
        raise UserError(f"reward {name!r} returned {value!r} at index {index}, not a number{hint}")
    if not math.isfinite(value):
        raise UserError(f"reward {name!r} returned {value} at index {index}; rewards must be finite")
    return float(value)


class UserFunctionReward:
    """A user's reward function behind posttrain's `Reward` interface."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name, function = resolve(name)
        self.kwargs = kwargs
        self.function = functools.partial(function, **kwargs) if kwargs else function

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        texts = [as_text(c) for c in completions]
        out = self.function(list(prompts), texts, **columns)
        metrics = out.metrics if isinstance(out, RewardOutput) else {}
        scores = out.scores if isinstance(out, RewardOutput) else out
        if hasattr(scores, "tolist"):  # numpy arrays, torch tensors
            scores = scores.tolist()
        if not isinstance(scores, list | tuple):
            raise UserError(
                f"reward {self.name!r} returned {type(scores).__name__}; "
                "expected a list with one float per completion, or a RewardOutput"
            )
        if len(scores) != len(texts):
            raise UserError(f"reward {self.name!r} returned {len(scores)} scores for {len(texts)} completions")
        return RewardOutput([_score(self.name, i, s) for i, s in enumerate(scores)], dict(metrics))

    def __reduce__(self) -> tuple:
        return (_rebuild, (self.name, self.kwargs))


def _rebuild(name: str, kwargs: dict[str, Any]) -> UserFunctionReward:
    return UserFunctionReward(name, **kwargs)
