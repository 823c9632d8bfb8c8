"""Turning completions into rewards: env verdicts or the `rewards.*` composition, then the repetition canary.

The canary (ZAYA1's LZ77 guard: a completion that compresses below the threshold gets reward 0) is applied
here, once, whatever the scorer. A scorer's own failure (an env that crashed or hung, a reward function
that raised or returned garbage) is marked `error`: it is not the model's fault, so the loop drops the
sample from training and counts it instead of teaching the model that its answer was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.envs import EnvPool, Problem
from posttrain.rewards.base import Reward
from posttrain.rewards.shaping import RepetitionCanary


@dataclass
class Score:
    reward: float
    correct: bool
    format_ok: bool
    error: str | None = None  # the scorer failed on this sample; never trained on


class Scorer:
    """`score(problems, completions, step=, max_steps=) -> (scores, metrics)`; `min_reward` bounds its rewards."""

    min_reward: float = 0.0

    def score(
        self, problems: Sequence[Problem], completions: Sequence[str], *, step: int, max_steps: int
    ) -> tuple[list[Score], dict[str, float]]:
        raise NotImplementedError


class EnvScorer(Scorer):
    """The envs' own verdicts, computed in the isolating pool."""

    def __init__(self, pool: EnvPool, min_reward: float = 0.0) -> None:
        self.pool, self.min_reward = pool, min_reward

    def score(self, problems, completions, *, step, max_steps):
        verdicts = self.pool.verify_many(list(zip(problems, completions, strict=True)))
        return [Score(v.reward, v.correct, v.format_ok, v.info.get("error")) for v in verdicts], {}


class RewardScorer(Scorer):
    """A `posttrain.rewards` reward (or any TRL-style callable), fed the problems' dataset columns.

    Columns: every key of the problems' `extra` (the dataset row), `answer` from the problem's reference when the
    row has none, and training progress (`step`, `max_steps`). A sample counts as correct when its reward
    reaches `correct_at`, or, with `correct_by`, when that other reward does (RLHF: the reward-model score is the
    reward, the instruction checker says what was done right)."""

    def __init__(
        self,
        reward: Reward,
        *,
        name: str = "reward",
        correct_at: float = 1.0,
        min_reward: float = 0.0,
        correct_by: Reward | None = None,
    ):
        self.reward, self.name, self.correct_at, self.min_reward = reward, name, correct_at, min_reward
        self.correct_by = correct_by

    def score(self, problems, completions, *, step, max_steps):
        n = len(problems)
        keys = dict.fromkeys(key for p in problems for key in p.extra)
        columns: dict[str, Any] = {key: [p.extra.get(key) for p in problems] for key in keys}
        columns.setdefault("answer", [p.reference for p in problems])
        columns.update(step=step, max_steps=max_steps)
        prompts = [p.prompt for p in problems]
        try:
            scores, metrics = _checked(self.reward(prompts, list(completions), **columns), n, self.name)
            judged = scores
            if self.correct_by is not None:
                judged, judge_metrics = _checked(self.correct_by(prompts, list(completions), **columns), n, self.name)
                metrics.update(judge_metrics)
        except Exception as exc:  # a broken reward must not end the run: the step just cannot learn from it
            error = f"{self.name}: {type(exc).__name__}: {exc}"[:500]
            return [Score(0.0, False, False, error) for _ in problems], {}
        return [Score(s, j >= self.correct_at, True) for s, j in zip(scores, judged, strict=True)], metrics


class RoutedScorer(Scorer):
    """Dataset problems (`env` = `data:<name>`) go to their dataset's scorer, every other problem to `default`."""

    def __init__(self, default: Scorer | None, by_dataset: Mapping[str, Scorer]) -> None:
        self.default, self.by_dataset = default, dict(by_dataset)
        self.min_reward = min(s.min_reward for s in [*self.by_dataset.values(), *([default] if default else [])])

    def score(self, problems, completions, *, step, max_steps):
        scores: list[Score | None] = [None] * len(problems)
        metrics: dict[str, float] = {}
        routes: dict[str, list[int]] = {}
        for i, problem in enumerate(problems):
            routes.setdefault(problem.env if problem.env.startswith("data:") else "", []).append(i)
        for route, indices in routes.items():
            scorer = self.by_dataset.get(route.removeprefix("data:")) if route else self.default
            if scorer is None:
                raise KeyError(f"no scorer for problems of {route or 'envs'}")
            part, part_metrics = scorer.score(
                [problems[i] for i in indices], [completions[i] for i in indices], step=step, max_steps=max_steps
            )
            for i, score in zip(indices, part, strict=True):
                scores[i] = score
            metrics.update(part_metrics)
        return [s for s in scores if s is not None], metrics


def score_with_canary(
    scorer: Scorer,
    canary: RepetitionCanary | None,
    problems: Sequence[Problem],
    completions: Sequence[str],
    *,
    step: int,
    max_steps: int,
) -> tuple[list[Score], dict[str, float]]:
    """The scorer's scores, with degenerate (repetitive) completions zeroed: the one place the canary runs."""
    scores, metrics = scorer.score(problems, completions, step=step, max_steps=max_steps)
    if canary is None or not scores:
        return scores, metrics
    alive = canary([p.prompt for p in problems], list(completions)).scores
    metrics["repetition/zeroed"] = sum(keep == 0 for keep in alive) / len(alive)
    for score, keep in zip(scores, alive, strict=True):
        if keep == 0:
            score.reward, score.correct = 0.0, False
    return scores, metrics


def _checked(out: Any, n: int, prefix: str) -> tuple[list[float], dict[str, float]]:
    """The scores of a reward's output (a RewardOutput or a plain list), checked, and its scalar metrics."""
    scores = list(out.scores) if hasattr(out, "scores") else list(out)
    if len(scores) != n or not all(isinstance(s, int | float) and math.isfinite(s) for s in scores):
        raise ValueError(f"returned {len(scores)} scores for {n} completions, or a non-finite one")
    return [float(s) for s in scores], _scalars(getattr(out, "metrics", {}), prefix)


def _scalars(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The reward's batch-level numbers (per-sample lists are left out), under `<prefix>/`."""
    return {
        key if key.startswith(f"{prefix}/") else f"{prefix}/{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float)
    }


class ExactAnswerScorer(Scorer):
    """Correct when the completion's extracted answer equals the reference's (SFT's held-out slice of a dataset)."""

    def score(self, problems, completions, *, step, max_steps):
        from posttrain.answers import extract_answer

        scores = []
        for problem, completion in zip(problems, completions, strict=True):
            got, want = extract_answer(completion), extract_answer(problem.reference or "")
            hit = got is not None and got == want
            scores.append(Score(float(hit), hit, got is not None))
        return scores, {}
