"""Curricula against simulated learners whose pass rate is a known function of difficulty."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest

from posttrain.envs import CurriculumConfig, make_curriculum
from posttrain.errors import UserError


def run(curriculum, pass_rate, steps: int, batch: int = 64, seed: int = 0) -> list[tuple[str, int, int, bool]]:
    learner = random.Random(seed)
    history = []
    for _ in range(steps):
        for env, problem_seed, difficulty in curriculum.sample(batch):
            correct = learner.random() < pass_rate(env, difficulty)
            curriculum.update(env, difficulty, correct)
            history.append((env, problem_seed, difficulty, correct))
    return history


def test_rlve_window_and_step_up_at_threshold():
    config = CurriculumConfig(kind="rlve", min_samples=128, threshold=0.9, window=4)
    # "easy" is mastered up to difficulty 5 (pass rate 0.95), then drops to 0.5; "hard" (0.7) never reaches 0.9.
    rates = {"easy": lambda d: 0.95 if d <= 5 else 0.5, "hard": lambda d: 0.7}
    curriculum = make_curriculum(config, ["easy", "hard"], seed=1)
    history = run(curriculum, lambda env, d: rates[env](d), steps=300)
    assert curriculum.state["hard"]["h"] == 0
    assert curriculum.state["easy"]["h"] == 6  # stepped up through 0..5, stuck where accuracy < 0.9
    difficulties = Counter(d for env, _, d, _ in history[-2000:] if env == "easy")
    assert set(difficulties) == {3, 4, 5, 6}  # (h - 4, h] with h = 6
    assert {d for env, _, d, _ in history if env == "hard"} == {0}


def test_rlve_needs_min_samples_at_h():
    config = CurriculumConfig(kind="rlve", min_samples=50, threshold=0.9, window=2)
    curriculum = make_curriculum(config, ["x"], seed=0)
    for _ in range(49):
        curriculum.update("x", 0, True)
    for _ in range(1000):
        curriculum.update("x", 5, True)  # d != h: ignored
    assert curriculum.state["x"]["h"] == 0
    curriculum.update("x", 0, True)
    assert curriculum.state["x"]["h"] == 1 and curriculum.state["x"]["seen"] == 0
    for _ in range(50):
        curriculum.update("x", 1, False)
    assert curriculum.state["x"]["h"] == 1 and curriculum.state["x"]["seen"] == 0  # counters reset, h kept


def test_rlve_respects_max_difficulty():
    curriculum = make_curriculum(CurriculumConfig(kind="rlve", min_samples=4), ["x"], max_difficulties={"x": 2}, seed=0)
    for _ in range(100):
        ((env, _, d),) = curriculum.sample(1)
        curriculum.update(env, d, True)
    assert curriculum.state["x"]["h"] == 2


def test_target_settles_near_target_and_can_lower():
    def sigmoid_rate(center: float):
        return lambda d: 1.0 / (1.0 + math.exp(d - center))

    config = CurriculumConfig(kind="target", target_rate=0.5, target_decay=0.995)
    curriculum = make_curriculum(config, ["a"], seed=3)
    history = run(curriculum, lambda env, d: sigmoid_rate(6.0)(d), steps=60)
    late = history[-1500:]
    accuracy = sum(correct for *_, correct in late) / len(late)
    assert abs(accuracy - 0.5) < 0.1
    mean_d = sum(d for _, _, d, _ in late) / len(late)
    assert 5.0 <= mean_d <= 7.0
    # The learner forgets: the pass-rate curve shifts down by 3; the curriculum follows it down.
    history = run(curriculum, lambda env, d: sigmoid_rate(3.0)(d), steps=60, seed=1)
    late = history[-1500:]
    assert 2.0 <= sum(d for _, _, d, _ in late) / len(late) <= 4.0
    assert abs(sum(correct for *_, correct in late) / len(late) - 0.5) < 0.1


def test_fixed_and_weights():
    config = CurriculumConfig(kind="fixed", fixed_difficulty=3)
    curriculum = make_curriculum(config, ["a", "b", "c"], weights={"a": 3.0, "b": 1.0, "c": 0.0}, seed=0)
    samples = curriculum.sample(4000)
    counts = Counter(env for env, _, _ in samples)
    assert counts["c"] == 0 and 2.6 < counts["a"] / counts["b"] < 3.4
    assert {d for _, _, d in samples} == {3}
    curriculum.disable("a")
    assert {env for env, _, _ in curriculum.sample(200)} == {"b"}


@pytest.mark.parametrize("kind", ["rlve", "target", "fixed"])
def test_state_round_trip_resumes_exactly(kind: str):
    config = CurriculumConfig(kind=kind, min_samples=16)
    rate = lambda env, d: 0.95 if d < 3 else 0.3  # noqa: E731
    original = make_curriculum(config, ["a", "b"], seed=7)
    run(original, rate, steps=20)
    state = json.loads(json.dumps(original.state_dict()))  # survives a JSON checkpoint
    resumed = make_curriculum(config, ["a", "b"], seed=999)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == original.state_dict()
    assert run(resumed, rate, steps=10, seed=5) == run(original, rate, steps=10, seed=5)
    assert resumed.stats() == original.stats()


@pytest.mark.parametrize("kind", ["rlve", "target", "fixed"])
def test_a_disabled_env_stays_disabled_across_a_resume(kind: str):
    original = make_curriculum(CurriculumConfig(kind=kind, min_samples=16), ["a", "b", "c"], seed=7)
    run(original, lambda env, d: 0.5, steps=3)
    original.disable("b")
    resumed = make_curriculum(CurriculumConfig(kind=kind, min_samples=16), ["a", "b", "c"], seed=1)
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert resumed.disabled == {"b"}
    drawn = resumed.sample(300)
    assert drawn == original.sample(300)  # the very draws the uninterrupted run makes
    assert {env for env, _, _ in drawn} == {"a", "c"}


def test_resume_into_a_changed_env_set_keeps_what_was_learned_and_starts_new_envs_fresh():
    """rlve with a learner that always solves d < 3 and never d >= 3: h climbs to exactly 3 for every env."""
    config = CurriculumConfig(kind="rlve", min_samples=16, window=4)
    masters_below_3 = lambda env, d: 1.0 if d < 3 else 0.0  # noqa: E731
    original = make_curriculum(config, ["a", "b", "c"], seed=7)
    run(original, masters_below_3, steps=20)
    assert original.stats() == {"curriculum/a": 3.0, "curriculum/b": 3.0, "curriculum/c": 3.0}
    original.disable("a")
    state = json.loads(json.dumps(original.state_dict()))
    changed = make_curriculum(config, ["c", "d"], seed=7)  # a and b left the config, d is new
    changed.load_state_dict(state)
    assert changed.stats() == {"curriculum/c": 3.0, "curriculum/d": 0.0}
    assert changed.disabled == set()  # a's disabling does not outlive a
    drawn = changed.sample(400)
    assert {env for env, _, _ in drawn} == {"c", "d"}
    assert {d for env, _, d in drawn if env == "c"} == {0, 1, 2, 3}  # (h - window, h] with h = 3
    assert {d for env, _, d in drawn if env == "d"} == {0}


def test_curriculum_rng_is_its_own():
    curriculum = make_curriculum(CurriculumConfig(kind="target"), ["a"], seed=0)
    random.seed(123)
    expected = random.random()
    random.seed(123)
    run(curriculum, lambda env, d: 0.5, steps=2)
    assert random.random() == expected


def test_config_errors():
    with pytest.raises(UserError, match="did you mean 'target'"):
        CurriculumConfig(kind="targte")
    with pytest.raises(UserError, match="threshold"):
        CurriculumConfig(threshold=1.5)
    curriculum = make_curriculum(CurriculumConfig(kind="rlve"), ["a"])
    with pytest.raises(UserError, match="kind"):
        curriculum.load_state_dict(make_curriculum(CurriculumConfig(kind="fixed"), ["a"]).state_dict())
