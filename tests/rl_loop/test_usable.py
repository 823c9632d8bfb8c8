"""RLLoop._usable: rollouts too many policy versions old are dropped, then groups with no reward spread."""

from __future__ import annotations

from types import SimpleNamespace

from posttrain.config import Config
from posttrain.envs import Problem
from posttrain.rl.collect import Sample
from posttrain.rl.loop import RLLoop, RLParts
from posttrain.rollout.types import Rollout


def loop(learner_version: int, **rl) -> RLLoop:
    cfg = Config()
    for key, value in rl.items():
        setattr(cfg.rl, key, value)
    parts = RLParts(fleet=None, learner=SimpleNamespace(step_count=learner_version), pool=None, curriculum=None,
                    tokenizer=None)  # fmt: skip
    return RLLoop(SimpleNamespace(cfg=cfg), parts)


def sample(group: int, reward: float, version: int) -> Sample:
    rollout = Rollout(f"g{group}.{reward}.{version}", group, [1], [2], [0.0], "x", "eos", version, "w0")
    return Sample(Problem("add", group, 0, f"q{group}"), rollout, group, reward, reward > 0, True)


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
    assert metrics == {"stale_dropped": 2, "staleness": 0.0, "groups_dropped": 0}
