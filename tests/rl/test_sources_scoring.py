"""Problem sources (datasets, mixtures) and scorers (rewards with TRL's signature, routing), without a model."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from posttrain.data.from_envs import is_heldout
from posttrain.envs import Problem
from posttrain.errors import UserError
from posttrain.rewards.base import RewardOutput
from posttrain.rl.config import DatasetSpec
from posttrain.rl.problem_data import load_problem_rows
from posttrain.rl.scoring import RewardScorer, RoutedScorer, Score, Scorer
from posttrain.rl.sources import DatasetSource, MixtureSource, ProblemSource

ROWS = [{"prompt": f"What is {i}+{i}?", "answer": str(2 * i), "level": i % 3} for i in range(200)]


def test_a_dataset_source_walks_seeded_epochs_and_never_hands_out_held_out_rows():
    source = DatasetSource("sums", ROWS, answer_column="answer", seed=0)
    held = {r["prompt"] for r in ROWS if is_heldout(r["prompt"])}
    assert held  # the hash holds out about a tenth
    first = source.draw(len(source.trainable))
    assert {p.prompt for p in first} == {r["prompt"] for r in ROWS} - held  # one epoch: every trainable row once
    second = source.draw(len(source.trainable))
    assert sorted(p.seed for p in second) == sorted(p.seed for p in first)
    assert [p.seed for p in second] != [p.seed for p in first]  # a new order each epoch
    problem = first[0]
    assert problem.env == "data:sums" and problem.reference == ROWS[problem.seed]["answer"]
    assert problem.extra["level"] == ROWS[problem.seed]["level"]  # every column reaches the scorer


def test_dataset_position_and_exclusions_survive_a_save_and_restore():
    source = DatasetSource("sums", ROWS, answer_column="answer", seed=3)
    source.draw(50)
    source.exclude(source.draw(1)[0])
    state = json.loads(json.dumps(source.state_dict()))
    expected = [p.seed for p in source.draw(300)]
    restored = DatasetSource("sums", ROWS, answer_column="answer", seed=3)
    restored.load_state_dict(state)
    assert [p.seed for p in restored.draw(300)] == expected
    assert state["excluded"][0] not in expected


class Fixed(ProblemSource):
    def __init__(self, name: str, stock: int | None = None) -> None:
        self.name, self.stock, self.given = name, stock, 0

    def draw(self, count: int) -> list[Problem]:
        count = count if self.stock is None else min(count, self.stock - self.given)
        self.given += count
        return [Problem(self.name if self.name == "envs" else f"data:{self.name}", i, 0, "q") for i in range(count)]


def test_a_mixture_draws_by_weight_and_drops_an_exhausted_source():
    mix = MixtureSource([(Fixed("envs"), 3.0), (Fixed("small", stock=50), 1.0)], seed=0)
    drawn = Counter(p.env for p in mix.draw(400))
    assert drawn["data:small"] == 50 and drawn["envs"] == 350  # the dataset ran dry; the curriculum filled in
    mix = MixtureSource([(Fixed("envs"), 3.0), (Fixed("big"), 1.0)], seed=0)
    share = Counter(p.env for p in mix.draw(4000))["data:big"] / 4000
    assert share == pytest.approx(0.25, abs=0.03)


def trl_reward(prompts, completions, answer, **kwargs):
    """TRL's reward-function signature: a list of floats, one per completion."""
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer, strict=True)]


def test_a_trl_style_function_and_a_reward_output_both_score():
    problems = [Problem("data:sums", i, 0, f"q{i}", reference=str(i)) for i in range(3)]
    scores, _ = RewardScorer(trl_reward).score(problems, ["0", "5", "2"], step=1, max_steps=10)
    assert [s.reward for s in scores] == [1.0, 0.0, 1.0] and [s.correct for s in scores] == [True, False, True]

    def with_metrics(prompts, completions, step, max_steps, **_):
        return RewardOutput([step / max_steps] * len(completions), {"progress": step / max_steps})

    scores, metrics = RewardScorer(with_metrics, name="prog").score(problems, ["a"] * 3, step=2, max_steps=8)
    assert [s.reward for s in scores] == [0.25] * 3 and metrics == {"prog/progress": 0.25}


@pytest.mark.parametrize(
    "broken",
    [
        lambda prompts, completions, **_: 1 / 0,
        lambda prompts, completions, **_: [1.0],  # wrong length
        lambda prompts, completions, **_: [float("nan")] * len(completions),
        lambda prompts, completions, **_: ["yes"] * len(completions),
    ],
)
def test_a_broken_reward_marks_every_sample_as_a_scorer_error_instead_of_crashing(broken):
    problems = [Problem("data:x", i, 0, "q") for i in range(2)]
    scores, _ = RewardScorer(broken, name="mine").score(problems, ["a", "b"], step=0, max_steps=1)
    assert all(s.error and s.error.startswith("mine: ") and s.reward == 0 for s in scores)


class Constant(Scorer):
    def __init__(self, value: float) -> None:
        self.value = value

    def score(self, problems, completions, *, step, max_steps):
        return [Score(self.value, True, True) for _ in problems], {f"c{self.value}": 1.0}


def test_routed_scoring_sends_each_dataset_to_its_scorer_and_keeps_the_order():
    problems = [Problem("add", 0, 0, "q"), Problem("data:a", 1, 0, "q"), Problem("data:b", 2, 0, "q")] * 2
    routed = RoutedScorer(Constant(0.5), {"a": Constant(1.0), "b": Constant(0.0)})
    scores, metrics = routed.score(problems, ["x"] * 6, step=0, max_steps=1)
    assert [s.reward for s in scores] == [0.5, 1.0, 0.0] * 2
    assert set(metrics) == {"c0.5", "c1.0", "c0.0"}


def test_a_dataset_missing_its_answer_column_is_one_line_before_any_work(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "gold": "1"}) + "\n" for i in range(5)))
    with pytest.raises(UserError, match="has no column 'answer' \\(its columns: gold, prompt\\)"):
        load_problem_rows(DatasetSpec(path=str(path)))
    assert len(load_problem_rows(DatasetSpec(path=str(path), answer_column="gold"))) == 5
    path.write_text(json.dumps({"question": "no prompt column"}) + "\n")
    with pytest.raises(UserError, match="row 0: needs a 'prompt'"):
        load_problem_rows(DatasetSpec(path=str(path), answer_column=None))
