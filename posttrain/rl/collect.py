"""Turn curriculum draws into scored samples: problems -> fleet rollouts -> env verdicts -> rewards.

This is the "generate" and "verify" half of an RL step. It knows nothing about the learner; the loop
hands its `Sample`s to `TrainBatch.from_lists`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.data.from_envs import is_heldout
from posttrain.envs import Curriculum, EnvPool, Problem
from posttrain.rewards.shaping import RepetitionCanary
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.fleet import RolloutFleet
from posttrain.rollout.types import Request, Rollout


@dataclass
class Sample:
    """One scored rollout. `group` indexes the GRPO group: the samples that share a baseline."""

    problem: Problem
    rollout: Rollout
    group: int
    reward: float
    correct: bool
    format_ok: bool
    round: int = 0  # Markovian RSA round (0 = independent attempts, 1.. = aggregation)

    @property
    def truncated(self) -> bool:
        return self.rollout.finish_reason == "length"


class ProblemSource:
    """Problems from the curriculum, never one of the held-out prompts `posttrain eval` scores."""

    def __init__(self, curriculum: Curriculum, pool: EnvPool) -> None:
        self.curriculum, self.pool = curriculum, pool

    def draw(self, count: int) -> list[Problem]:
        problems: list[Problem] = []
        for _ in range(100):
            if len(problems) >= count:
                break
            for name in self.pool.quarantined:
                self.curriculum.disable(name)
            drawn = self.pool.generate_many(self.curriculum.sample(count - len(problems)))
            problems += [p for p in drawn if p is not None and not is_heldout(p.prompt)]
        if len(problems) < count:
            raise RuntimeError(f"could draw only {len(problems)} of {count} problems: every env is failing")
        return problems


def _score(
    problems: Sequence[Problem],
    rollouts: Sequence[Rollout],
    groups: Sequence[int],
    rounds: Sequence[int],
    pool: EnvPool,
    canary: RepetitionCanary,
    started: float,
) -> tuple[list[Sample], dict[str, float]]:
    """Verdicts gated by the repetition canary, and the step's time split (generation began at `started`)."""
    generated = time.perf_counter()
    verdicts = pool.verify_many([(p, r.text) for p, r in zip(problems, rollouts, strict=True)])
    alive = canary([p.prompt for p in problems], [r.text for r in rollouts]).scores
    samples = [
        Sample(p, r, g, v.reward * keep, v.correct and keep > 0, v.format_ok, t)
        for p, r, v, keep, g, t in zip(problems, rollouts, verdicts, alive, groups, rounds, strict=True)
    ]
    return samples, {"time/generate": generated - started, "time/verify": time.perf_counter() - generated}


def collect_single(
    problems: Sequence[Problem],
    group_size: int,
    fleet: RolloutFleet,
    step: int,
    pool: EnvPool,
    canary: RepetitionCanary,
) -> tuple[list[Sample], dict[str, float]]:
    """`group_size` independent samples per problem; each problem is one group."""
    start = time.perf_counter()
    params = fleet.sampling_params(seed=step)  # one seed per call: requests sharing params share a batch
    requests = [
        Request(id=f"s{step}.p{i}.k{k}", messages=[{"role": "user", "content": problem.prompt}], group=i, params=params)
        for i, problem in enumerate(problems)
        for k in range(group_size)
    ]
    rollouts = fleet.generate(requests)
    owners = [problems[r.group] for r in rollouts]
    return _score(owners, rollouts, [r.group for r in rollouts], [0] * len(rollouts), pool, canary, start)


def collect_rsa(
    problems: Sequence[Problem],
    rsa: RSAConfig,
    train_rounds: Sequence[int],
    fleet: RolloutFleet,
    step: int,
    pool: EnvPool,
    canary: RepetitionCanary,
) -> tuple[list[Sample], dict[str, float]]:
    """Markovian RSA trees; the candidates of each round in `train_rounds` form one group per problem."""
    start = time.perf_counter()
    trees = fleet.run_rsa([p.prompt for p in problems], rsa, seed=step)
    owners, rollouts, groups, rounds = [], [], [], []
    for i, (problem, tree) in enumerate(zip(problems, trees, strict=True)):
        for t in train_rounds:
            if t < len(tree.rounds):
                for candidate in tree.rounds[t]:
                    owners.append(problem)
                    rollouts.append(candidate.rollout)
                    groups.append(i * len(tree.rounds) + t)
                    rounds.append(t)
    return _score(owners, rollouts, groups, rounds, pool, canary, start)


def sample_metrics(samples: Sequence[Sample], curriculum: Curriculum) -> dict[str, Any]:
    """Reward, accuracy and length overall; accuracy and difficulty per env."""
    n = max(len(samples), 1)
    rewards = [s.reward for s in samples]
    mean_reward = sum(rewards) / n
    metrics: dict[str, Any] = {
        "reward/mean": mean_reward,
        "reward/std": (sum((r - mean_reward) ** 2 for r in rewards) / n) ** 0.5,
        "accuracy": sum(s.correct for s in samples) / n,
        "format_ok": sum(s.format_ok for s in samples) / n,
        "response_length": sum(len(s.rollout.completion_ids) for s in samples) / n,
        "truncated": sum(s.truncated for s in samples) / n,
    }
    by_env: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_env[s.problem.env].append(s)
    for env, env_samples in by_env.items():
        metrics[f"pass_rate/{env}"] = sum(s.correct for s in env_samples) / len(env_samples)
        metrics[f"sampled_difficulty/{env}"] = sum(s.problem.difficulty for s in env_samples) / len(env_samples)
    metrics.update({key.replace("curriculum/", "difficulty/"): v for key, v in curriculum.stats().items()})
    return metrics
