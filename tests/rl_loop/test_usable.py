"""RLLoop._usable: scorer failures, too-stale rollouts, solved groups and groups with no reward spread are dropped."""

from __future__ import annotations

from types import SimpleNamespace

from posttrain.config import Config
from posttrain.envs import Problem
from posttrain.rl.collect import Sample
from posttrain.rl.loop import RLLoop, RLParts
from posttrain.rollout.types import Rollout


class Excluding:
    """A problem source that records what the pass-rate filter excludes."""

    def __init__(self) -> None:
        self.excluded = []

    def exclude(self, problem) -> None:
        self.excluded.append(problem.seed)


def loop(learner_version: int, pass_rate_filter: float = 0.0, **rl) -> RLLoop:
    cfg = Config()
    for key, value in rl.items():
        setattr(cfg.rl, key, value)
    cfg.problems.pass_rate_filter = pass_rate_filter
    learner = SimpleNamespace(step_count=learner_version)
    parts = RLParts(fleet=None, learner=learner, source=Excluding(), collector=None, tokenizer=None)
    return RLLoop(SimpleNamespace(cfg=cfg), parts)


def sample(group: int, reward: float, version: int, **fields) -> Sample:
    rollout = Rollout(f"g{group}.{reward}.{version}.{len(fields)}", group, [1], [2], [0.0], "x", "eos", version, "w0")
    return Sample(Problem("add", group, 0, f"q{group}"), rollout, group, reward, reward > 0, True, **fields)


def test_rollouts_older_than_max_staleness_are_dropped_and_counted():
    samples = [sample(0, 1.0, 5), sample(0, 0.0, 4), sample(1, 1.0, 3), sample(1, 0.0, 5)]
    metrics: dict[str, float] = {}
    kept = loop(5, max_staleness=1, dynamic_sampling=False)._usable(samples, metrics)
    assert kept == [samples[0], samples[1], samples[3]]
    assert metrics["stale_dropped"] == 1 and metrics["staleness"] == 1 / 3


def test_dynamic_sampling_drops_groups_without_reward_spread_after_the_staleness_cut():
    samples = [
        sample(0, 1.0, 2), sample(0, 0.0, 2),  # informative
        sample(1, 0.0, 2), sample(1, 0.0, 2),  # all wrong
        sample(2, 1.0, 2), sample(2, 1.0, 2),  # all right
        sample(3, 1.0, 2), sample(3, 0.0, 0),  # informative only with its stale sample, which goes
    ]  # fmt: skip
    metrics = {"groups_dropped": 1, "stale_dropped": 2}  # accumulated over earlier refills of the step
    kept = loop(2, max_staleness=1, dynamic_sampling=True)._usable(samples, metrics)
    assert kept == samples[:2]
    assert metrics["groups_dropped"] == 1 + 3 and metrics["stale_dropped"] == 2 + 1
    assert loop(2, max_staleness=1, dynamic_sampling=False)._usable(samples, {}) == samples[:7]


def test_on_policy_keeps_only_the_current_version():
    samples = [sample(0, 1.0, 7), sample(0, 0.0, 7), sample(1, 1.0, 6), sample(1, 0.0, 6)]
    metrics: dict[str, float] = {}
    assert loop(7, max_staleness=0)._usable(samples, metrics) == samples[:2]
    assert metrics == {"scorer_errors_dropped": 0, "stale_dropped": 2, "staleness": 0.0, "groups_dropped": 0}


def test_scorer_failures_and_untrained_rounds_never_train():
    """An env that crashed gives an error verdict with reward 0: that is not the model's answer being wrong."""
    failed = sample(0, 0.0, 3, error="env add crashed")
    candidates = [sample(1, 1.0, 3, round=0, trained=False), sample(1, 0.0, 3, round=0, trained=False)]
    good = [sample(0, 1.0, 3), sample(0, 0.0, 3)]
    metrics: dict[str, float] = {}
    assert loop(3, max_staleness=0)._usable([failed, *candidates, *good], metrics) == good
    assert metrics["scorer_errors_dropped"] == 1


def test_the_pass_rate_filter_drops_solved_groups_and_excludes_their_problems():
    easy = [sample(0, 1.0, 1) for _ in range(7)] + [sample(0, 0.0, 1)]  # 7/8 = 0.875 > 0.75
    hard = [sample(1, 1.0, 1) for _ in range(6)] + [sample(1, 0.0, 1) for _ in range(2)]  # 6/8 = 0.75, kept
    filtered = loop(1, pass_rate_filter=0.75, max_staleness=0)
    metrics: dict[str, float] = {}
    assert filtered._usable([*easy, *hard], metrics) == hard
    assert metrics["pass_rate_filtered"] == 1 and filtered.parts.source.excluded == [0]
