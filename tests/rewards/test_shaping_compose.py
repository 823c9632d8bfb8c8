"""Format, overlong and repetition shaping; weighted sums, gates, config building and the registry."""

from __future__ import annotations

import random
import zlib

import pytest
from omegaconf import OmegaConf

from posttrain.errors import UserError
from posttrain.rewards import RewardOutput, available_rewards, base, make_reward, register_reward
from posttrain.rewards.config import RewardsConfig, RewardSpec, ShapingConfig, build_reward
from posttrain.rewards.shaping import compression_ratio, overlong_penalty


def test_compression_ratio_is_zlib_bytes_over_raw_bytes() -> None:
    text = "héllo wörld " * 50
    raw = text.encode()
    assert compression_ratio(text) == len(zlib.compress(raw, 9)) / len(raw)
    assert compression_ratio("") == 1.0


def test_repetition_canary_trips_on_loops_only() -> None:
    rng = random.Random(0)
    prose = " ".join(
        rng.choice(["the", "cat", "sat", "on", "a", "mat", "then", "ran", "far", "away"]) for _ in range(300)
    )
    looping = "I will check again. " * 400
    out = make_reward("repetition")(["", "", "", ""], [prose, looping, "", "\x00" * 10_000])
    assert out.scores == [1.0, 0.0, 1.0, 0.0]
    assert out.metrics["repetition/ratio"][1] < 0.05 < out.metrics["repetition/ratio"][0]


def test_overlong_penalty_matches_dapo() -> None:
    assert overlong_penalty(80, max_length=100, buffer=20) == 0.0
    assert overlong_penalty(90, max_length=100, buffer=20) == pytest.approx(-0.5)
    assert overlong_penalty(100, max_length=100, buffer=20) == pytest.approx(-1.0)
    assert overlong_penalty(101, max_length=100, buffer=20) == -1.0
    reward = make_reward("overlong", max_length=100, buffer=20, mask_truncated=True)
    out = reward(["", "", ""], ["a", "b", "c"], completion_length=[10, 90, 100], truncated=[False, False, True])
    assert out.scores == pytest.approx([0.0, -0.5, -1.0])
    assert out.metrics["overlong/mask"] == [1.0, 1.0, 0.0]
    by_chars = reward(["", ""], ["x" * 50, "x" * 100])  # no length column: character counts, truncated at max
    assert by_chars.scores == pytest.approx([0.0, -1.0]) and by_chars.metrics["overlong/mask"] == [1.0, 0.0]
    with pytest.raises(UserError):
        make_reward("overlong", max_length=10)


def test_format_reward() -> None:
    completions = [
        "<think>a</think><answer>4</answer>",
        "<think>a</think> so \\boxed{4}",
        "<answer>4</answer>",  # no reasoning block
        "<think>a <answer>4</answer></think>",  # answer only inside the reasoning
        "<think>a</think><think>b</think><answer>1</answer>",
        "",
    ]
    assert make_reward("format")([""] * 6, completions).scores == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert make_reward("format", require_think=False)([""], ["<answer>4</answer>"]).scores == [1.0]


def test_weighted_sum_and_gate_compose_by_name() -> None:
    completions = ["<think>x</think><answer>4</answer>", "<think>x</think><answer>5</answer>", "<answer>4</answer>"]
    total = make_reward(
        "weighted_sum",
        components=[{"name": "math"}, {"name": "format", "weight": 0.5}],
    )([""] * 3, completions, answer="4")
    assert total.scores == [1.5, 0.5, 1.0]
    assert total.metrics["format/scores"] == [1.0, 1.0, 0.0] and "math/accuracy" in total.metrics
    gated = make_reward("gated", reward={"name": "math"}, gate={"name": "format"})([""] * 3, completions, answer="4")
    assert gated.scores == [1.0, 0.0, 0.0] and gated.metrics["gate/open"] == pytest.approx(2 / 3)


def test_weights_can_follow_training_progress() -> None:
    reward = build_reward(
        RewardsConfig(
            components=[RewardSpec("math"), RewardSpec("format", weight=0.5, ramp_steps=10)],
            shaping=ShapingConfig(repetition_threshold=0.0),
        )
    )
    completion = ["<think>x</think><answer>4</answer>"]
    assert reward([""], completion, answer="4", step=0).scores == [1.0]
    assert reward([""], completion, answer="4", step=4, max_steps=100).scores == pytest.approx([1.2])
    late = reward([""], completion, answer="4", step=50)
    assert late.scores == pytest.approx([1.5]) and late.metrics["format/weight"] == 0.5
    assert reward([""], completion, answer="4").scores == pytest.approx([1.5])  # no progress given: full weight


@pytest.fixture
def scratch_rewards(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reward registered by a test is gone after it: no leak into later tests, and the test can rerun."""
    available_rewards()  # loads the builtin rewards into the real registry first
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def test_behavioural_reward_gates_a_reward_on_instruction_following(scratch_rewards: None) -> None:
    """ZAYA1's RLHF reward: the score counts only if the instruction checker passes; skipped samples are not scored."""
    seen: list[str] = []

    @register_reward("test_length_score")
    def length_score() -> object:
        def score(prompts: list[str], completions: list[str], **columns: object) -> RewardOutput:
            seen.extend(completions)
            return RewardOutput([len(c) / 10 for c in completions], {"length": [float(len(c)) for c in completions]})

        return score

    constraints = [[{"type": "no_commas"}], [{"type": "no_commas"}], []]
    out = make_reward("gated", reward={"name": "test_length_score"}, gate={"name": "ifeval"})(
        ["", "", ""], ["no commas here", "a, b", "free"], constraints=constraints
    )
    assert out.scores == pytest.approx([1.4, 0.0, 0.4])
    assert seen == ["no commas here", "free"]
    assert "length" not in out.metrics  # per-sample metrics of a partial batch are dropped


def test_config_builds_the_full_reward_and_is_omegaconf_structured() -> None:
    structured = OmegaConf.structured(RewardsConfig)
    structured.shaping.overlong_max_length = 40
    structured.shaping.overlong_buffer = 10
    config: RewardsConfig = OmegaConf.to_object(structured)
    assert isinstance(config.components[0], RewardSpec)
    reward = build_reward(config)
    completions = [
        "<answer>4</answer>",
        "<answer>4</answer>" + " " * 17,
        "<answer>4</answer>" * 100,
        "<answer>3</answer>",
    ]
    out = reward([""] * 4, completions, answer="4")
    # right; right but 35 chars (penalty -0.5); a repetition loop (canary zeroes it); wrong
    assert out.scores == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert "repetition/ratio" in out.metrics and "overlong/penalty" in out.metrics
    plain = build_reward(RewardsConfig(shaping=ShapingConfig(repetition_threshold=0.0)))
    assert plain([""], ["<answer>4</answer>" * 100], answer="4").scores == [1.0]


def test_registry_names_and_errors() -> None:
    names = available_rewards()
    for name in (
        "math",
        "code",
        "format",
        "overlong",
        "repetition",
        "ifeval",
        "weighted_sum",
        "gated",
        "reward_model",
        "judge",
        "pairwise_judge",
    ):
        assert name in names
    with pytest.raises(UserError, match="did you mean 'math'"):
        make_reward("maths")
    with pytest.raises(UserError, match="format"):
        make_reward("format", bogus=1)
