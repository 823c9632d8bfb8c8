"""Code reward: extract the program from a completion and score it by the tests it passes in the sandbox."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from posttrain.answers import after_thinking
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward
from posttrain.rewards.sandbox import run_code_many

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str | None:
    """The last fenced code block after the reasoning; None when the completion has none."""
    blocks = _FENCE.findall(after_thinking(as_text(completion)))
    return blocks[-1] if blocks else None


@register_reward("code")
class CodeReward:
    """Pass fraction of the tests (or 1/0 with `all_or_nothing`). `prefix_column` is prepended to the program
    (HumanEval completions continue the prompt's signature)."""

    def __init__(
        self,
        *,
        tests_column: str = "tests",
        prefix_column: str | None = None,
        all_or_nothing: bool = False,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        isolation: str = "auto",
    ) -> None:
        self.tests_column = tests_column
        self.prefix_column = prefix_column
        self.all_or_nothing = all_or_nothing
        self.options = {"timeout_s": timeout_s, "memory_mb": memory_mb, "isolation": isolation}

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        n = len(completions)
        tests = per_sample(columns, self.tests_column, n)
        prefixes = per_sample(columns, self.prefix_column, n, "") if self.prefix_column else [""] * n
        programs = [extract_code(c) for c in completions]
        todo = [i for i in range(n) if programs[i] is not None and tests[i]]
        results = run_code_many([(as_text(prefixes[i]) + programs[i], tests[i]) for i in todo], **self.options)
        scores = [0.0] * n
        statuses = {status: 0.0 for status in ("ok", "fail", "timeout", "memory", "error")}
        for i, result in zip(todo, results, strict=True):
            scores[i] = float(result.status == "ok") if self.all_or_nothing else result.fraction
            statuses[result.status] += 1
        metrics: dict[str, float | list[float]] = {"code/pass_fraction": mean(scores)}
        metrics["code/extracted"] = mean([p is not None for p in programs])
        metrics.update({f"code/status_{k}": v for k, v in statuses.items()})
        return RewardOutput(scores, metrics)
