"""posttrain.rl.collect: held-out prompts never reach training; the repetition canary zeroes the reward."""

from __future__ import annotations

import pytest

from posttrain.data.from_envs import heldout_problems
from posttrain.envs import EnvPool, EnvsConfig, make_curriculum, make_env
from posttrain.envs.config import CurriculumConfig
from posttrain.rewards.shaping import RepetitionCanary
from posttrain.rl.collect import ProblemSource, _score
from posttrain.rollout.types import Rollout


@pytest.fixture(scope="module")
def pool():
    with EnvPool(EnvsConfig(workers=1), warm=["add"]) as pool:
        yield pool


def one_digit_sums(seed: int):
    # `add` at difficulty 0 has exactly 100 prompts, 9 of them held out: a draw of 300 hits one almost surely.
    return make_curriculum(CurriculumConfig(kind="fixed", fixed_difficulty=0), ["add"], seed=seed)


def test_problem_source_never_returns_a_prompt_that_eval_scores(pool):
    scored_by_eval = {p.prompt for p, _ in heldout_problems("add", 0, 9, seed=0)}
    assert len(scored_by_eval) == 9
    raw = pool.generate_many(one_digit_sums(seed=1).sample(300))
    assert scored_by_eval & {p.prompt for p in raw}  # without the source's filter they would be trained on
    drawn = ProblemSource(one_digit_sums(seed=1), pool).draw(300)
    assert len(drawn) == 300
    assert not scored_by_eval & {p.prompt for p in drawn}
    assert len({p.prompt for p in drawn}) > 60  # the rest still come up


def rollout(text: str, index: int) -> Rollout:
    ids = list(range(max(1, len(text))))
    return Rollout(f"r{index}", 0, [1, 2], ids, [0.0] * len(ids), text, "eos", 0, "w0")


def test_score_zeroes_the_reward_of_a_repetitive_but_correct_completion(pool):
    env = make_env("add")
    problem = env.generate(7, 0)
    answer = env.solve(problem)
    texts = [
        f"<answer>{answer}</answer>",
        "<think>" + "ha" * 2000 + f"</think><answer>{answer}</answer>",  # right answer after a repetition loop
        "\x00\xff" * 10,  # binary garbage
        "",
    ]
    verdicts = pool.verify_many([(problem, t) for t in texts])
    assert verdicts[0].correct and verdicts[1].correct  # the env alone would reward the loop
    rollouts = [rollout(t, i) for i, t in enumerate(texts)]
    samples, timings = _score([problem] * 4, rollouts, [0] * 4, [0] * 4, pool, RepetitionCanary(threshold=0.05), 0.0)
    assert set(timings) == {"time/generate", "time/verify"}
    assert samples[0].reward == verdicts[0].reward > 0 and samples[0].correct
    assert samples[1].reward == 0 and not samples[1].correct
    assert [s.reward for s in samples[2:]] == [0, 0] and not any(s.correct for s in samples[2:])
