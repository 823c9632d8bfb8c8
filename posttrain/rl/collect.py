"""Turn problems into scored samples: problems -> fleet rollouts -> scorer -> rewards.

This is the "generate" and "verify" half of an RL step; it knows nothing about the learner. Every sample
draws from its own random stream, seeded by (run seed, step, refill, problem, sample), so a group split into
chunks never repeats itself and two runs with one seed are identical.

Three ways to ask a problem, all one mechanism underneath (Markovian RSA trees, `run_markovian_rsa`):
* plain: `rl.group_size` independent samples form the group;
* `rollout.strategy=markovian_rsa`: RSA with `rsa.*`; each round in `rsa.train_rounds` is one group;
* test-time-compute prompts (`ttc.fraction`): RSA with T = 1 whose round 0 (the candidates) comes from the
  policy or an earlier checkpoint, and whose round 1 (aggregation prompts) is the trained group.
Samples of rounds that are not trained are still scored: they give the aggregation metrics.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.answers import extract_answer
from posttrain.envs import Problem, env_label
from posttrain.rewards.shaping import RepetitionCanary
from posttrain.rl.config import TTCConfig
from posttrain.rl.scoring import Scorer, score_with_canary
from posttrain.rl.sources import problem_messages
from posttrain.rollout.backend import Fleet
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.markovian_rsa import GenerateFn, RSATree
from posttrain.rollout.sampling import sample_seed
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
    round: int = 0  # RSA round (0 = independent attempts, 1.. = aggregation)
    error: str | None = None  # the scorer failed: never trained on
    trained: bool = True  # False: scored for metrics only (an RSA round outside the trained ones)
    kind: str = "plain"  # plain | rsa | ttc
    majority_correct: bool | None = None  # aggregation samples: was the majority of their round's candidates right?

    @property
    def truncated(self) -> bool:
        return self.rollout.finish_reason == "length"


class Collector:
    def __init__(
        self,
        fleet: Fleet,
        scorer: Scorer,
        *,
        group_size: int,
        seed: int,
        max_steps: int,
        rsa: RSAConfig | None = None,
        ttc: TTCConfig | None = None,
        candidates: GenerateFn | None = None,
        canary: RepetitionCanary | None = None,
        templates: RSAConfig | None = None,
    ) -> None:
        """`rsa`: every problem asked by Markovian RSA; `ttc`: that fraction asked as aggregation prompts, with
        round-0 candidates from `candidates` (an earlier checkpoint's generate) or the policy, worded by
        `templates`' aggregation and candidate templates (the `rsa` section SFT's aggregation examples used)."""
        self.fleet, self.scorer, self.group_size, self.seed = fleet, scorer, group_size, seed
        self.max_steps, self.rsa, self.ttc, self.candidates, self.canary = max_steps, rsa, ttc, candidates, canary
        self.templates = templates or RSAConfig()

    def collect(self, problems: Sequence[Problem], step: int, attempt: int) -> tuple[list[Sample], dict[str, float]]:
        """Scored samples for `problems`, and the time split; group ids are unique within (step, attempt)."""
        start = time.perf_counter()
        key = sample_seed(self.seed, step, attempt)
        owners: list[Problem] = []
        rollouts: list[Rollout] = []
        tags: list[tuple[int, int, bool, str]] = []  # (group, round, trained, kind)
        majority: list[tuple[int, str] | None] = []  # aggregation samples: (candidates' group, their top answer)
        if self.rsa is not None:
            trees = self.fleet.run_rsa([p.prompt for p in problems], self.rsa, seed=key)
            rounds = set(self.rsa.train_rounds)
            self._add_trees(problems, range(len(problems)), trees, rounds, "rsa", owners, rollouts, tags, majority)
        else:
            asked = self._ttc_split(len(problems), key)
            plain = [i for i in range(len(problems)) if i not in asked]
            requests = [
                Request(
                    id=f"p{i}.k{k}",
                    messages=problem_messages(problems[i]),
                    group=i,
                    params=self.fleet.sampling_params(),
                    seed=sample_seed(key, i, k),
                )
                for i in plain
                for k in range(self.group_size)
            ]
            for rollout in self.fleet.generate(requests):
                owners.append(problems[rollout.group])
                rollouts.append(rollout)
                tags.append((rollout.group, 0, True, "plain"))
                majority.append(None)
            if asked:
                trees = self.fleet.run_rsa(
                    [problems[i].prompt for i in asked], self._ttc_rsa(), seed=key, candidates=self.candidates
                )
                self._add_trees(problems, asked, trees, {1}, "ttc", owners, rollouts, tags, majority)
        generated = time.perf_counter()
        scores, metrics = score_with_canary(
            self.scorer, self.canary, owners, [r.text for r in rollouts], step=step, max_steps=self.max_steps
        )
        samples = [
            Sample(p, r, group, s.reward, s.correct, s.format_ok, rnd, s.error, trained, kind)
            for p, r, s, (group, rnd, trained, kind) in zip(owners, rollouts, scores, tags, strict=True)
        ]
        _mark_majorities(samples, majority)
        metrics["time/generate"] = generated - start
        metrics["time/verify"] = time.perf_counter() - generated
        return samples, metrics

    def _ttc_split(self, count: int, key: int) -> list[int]:
        """Which problems of this call are asked as aggregation prompts (a seeded choice of round(fraction·count))."""
        if self.ttc is None or self.ttc.fraction <= 0:
            return []
        chosen = random.Random(key).sample(range(count), round(self.ttc.fraction * count))
        return sorted(chosen)

    def _ttc_rsa(self) -> RSAConfig:
        """RSA with T = 1: `ttc.candidates` round-0 samples, then a group of aggregation samples at rollout sampling."""
        sampling = self.fleet.sampling_params()
        return RSAConfig(
            N=max(self.ttc.candidates, self.group_size),
            C=self.ttc.C,
            T=1,
            beta=sampling.max_new_tokens,
            tau=min(self.ttc.tau, sampling.max_new_tokens),
            final_temperature=sampling.temperature,
            final_top_p=sampling.top_p,
            train_rounds=[1],
            aggregation_template=self.templates.aggregation_template,
            candidate_template=self.templates.candidate_template,
        )

    @staticmethod
    def _add_trees(
        problems: Sequence[Problem],
        indices: Sequence[int],
        trees: Sequence[RSATree],
        trained_rounds: set[int],
        kind: str,
        owners: list[Problem],
        rollouts: list[Rollout],
        tags: list[tuple[int, int, bool, str]],
        majority: list[tuple[int, str] | None],
    ) -> None:
        """Every candidate of every round; round t of problem i is group |problems| + i·(T+1) + t, disjoint from
        the plain groups."""
        for i, tree in zip(indices, trees, strict=True):
            first = len(problems) + i * len(tree.rounds)
            for t, layer in enumerate(tree.rounds):
                votes = Counter(c.answer for c in tree.rounds[t - 1] if c.answer is not None) if t else Counter()
                top = (first + t - 1, votes.most_common(1)[0][0]) if votes else None
                for candidate in layer:
                    owners.append(problems[i])
                    rollouts.append(candidate.rollout)
                    tags.append((first + t, t, t in trained_rounds, kind))
                    majority.append(top)


def _mark_majorities(samples: list[Sample], majority: list[tuple[int, str] | None]) -> None:
    """For aggregation samples: whether the majority answer of the candidates they saw was right (a candidate
    giving that answer scored correct)."""
    right: dict[tuple[int, str], bool] = defaultdict(bool)
    for sample in samples:
        answer = extract_answer(sample.rollout.text)
        if answer is not None:
            right[sample.group, answer] |= sample.correct
    for sample, top in zip(samples, majority, strict=True):
        if top is not None:
            sample.majority_correct = right[top]


def sample_metrics(samples: Sequence[Sample], extra: Callable[[], dict[str, float]] | None = None) -> dict[str, Any]:
    """Reward, accuracy and length overall; accuracy and difficulty per env; aggregation against plain prompts."""
    scored = [s for s in samples if s.error is None]
    n = max(len(scored), 1)
    rewards = [s.reward for s in scored]
    mean_reward = sum(rewards) / n
    metrics: dict[str, Any] = {
        "reward/mean": mean_reward,
        "reward/std": (sum((r - mean_reward) ** 2 for r in rewards) / n) ** 0.5,
        "accuracy": sum(s.correct for s in scored) / n,
        "format_ok": sum(s.format_ok for s in scored) / n,
        "response_length": sum(len(s.rollout.completion_ids) for s in scored) / n,
        "truncated": sum(s.truncated for s in scored) / n,
        "scorer_errors": float(len(samples) - len(scored)),
    }
    by_env: dict[str, list[Sample]] = defaultdict(list)
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for s in scored:
        by_env[env_label(s.problem.env)].append(s)
        by_kind["plain" if s.kind == "plain" else f"{s.kind}_round{s.round}"].append(s)
    for env, env_samples in by_env.items():
        metrics[f"pass_rate/{env}"] = sum(s.correct for s in env_samples) / len(env_samples)
        metrics[f"sampled_difficulty/{env}"] = sum(s.problem.difficulty for s in env_samples) / len(env_samples)
    for kind, kind_samples in by_kind.items():
        metrics[f"accuracy/{kind}"] = sum(s.correct for s in kind_samples) / len(kind_samples)
    aggregated = [s for s in scored if s.majority_correct is not None]
    wrong = [s for s in aggregated if not s.majority_correct]
    if wrong:  # how often aggregation gets right what the candidates' majority got wrong
        metrics["aggregation/fixes_wrong_majority"] = sum(s.correct for s in wrong) / len(wrong)
    if len(wrong) < len(aggregated):
        right = [s for s in aggregated if s.majority_correct]
        metrics["aggregation/keeps_right_majority"] = sum(s.correct for s in right) / len(right)
    if extra is not None:
        metrics.update(extra())
    return metrics
