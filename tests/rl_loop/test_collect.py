"""posttrain.rl.collect and sources: held-out prompts never reach training, the canary zeroes the reward, every
sample has its own seeded stream, and the learner scores each trained RSA round under its own sampling."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from posttrain.config import compose, to_object
from posttrain.data.from_envs import heldout_problems
from posttrain.envs import EnvPool, EnvsConfig, make_curriculum, make_env
from posttrain.envs.config import CurriculumConfig
from posttrain.rewards.shaping import RepetitionCanary
from posttrain.rl.collect import Collector
from posttrain.rl.config import RLConfig, TTCConfig
from posttrain.rl.learner import Learner
from posttrain.rl.loop import RLLoop, RLParts
from posttrain.rl.scoring import EnvScorer, score_with_canary
from posttrain.rl.sources import CurriculumSource
from posttrain.rollout.backend import LocalFleet
from posttrain.rollout.config import RolloutConfig, RSAConfig
from tests.rollout.oracles import teacher_forced_logprobs


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
    drawn = CurriculumSource(one_digit_sums(seed=1), pool).draw(300)
    assert len(drawn) == 300
    assert not scored_by_eval & {p.prompt for p in drawn}
    assert len({p.prompt for p in drawn}) > 60  # the rest still come up


def test_the_canary_zeroes_the_reward_of_a_repetitive_but_correct_completion(pool):
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
    scores, metrics = score_with_canary(
        EnvScorer(pool), RepetitionCanary(threshold=0.05), [problem] * 4, texts, step=1, max_steps=1
    )
    assert scores[0].reward == verdicts[0].reward > 0 and scores[0].correct
    assert scores[1].reward == 0 and not scores[1].correct
    assert [s.reward for s in scores[2:]] == [0, 0] and not any(s.correct for s in scores[2:])
    assert metrics["repetition/zeroed"] == 0.25


@pytest.fixture(scope="module")
def fleet():
    return LocalFleet("zaya-tiny", RolloutConfig(backend="local", max_new_tokens=8, batch_size=64), device="cpu")


def collect(fleet, pool, *, seed=0, group_size=8, batch_size=64, rsa=None, **options):
    fleet.cfg = replace(fleet.cfg, batch_size=batch_size)
    problems = CurriculumSource(one_digit_sums(seed=5), pool).draw(3)
    collector = Collector(fleet, EnvScorer(pool), group_size=group_size, seed=seed, max_steps=1, rsa=rsa, **options)
    return collector.collect(problems, step=1, attempt=0)[0]


def test_every_sample_draws_its_own_stream_whatever_the_chunking(fleet, pool):
    """A group of 8 cut into chunks of 3 gives the very samples one batch gives; the 8 are distinct streams; a
    rerun repeats them and another seed changes them."""
    whole = [s.rollout.completion_ids for s in collect(fleet, pool, batch_size=64)]
    chunked = [s.rollout.completion_ids for s in collect(fleet, pool, batch_size=3)]
    assert whole == chunked
    for group in range(3):
        assert len({tuple(ids) for ids in whole[group * 8 : (group + 1) * 8]}) == 8
    assert [s.rollout.completion_ids for s in collect(fleet, pool)] == whole
    assert [s.rollout.completion_ids for s in collect(fleet, pool, seed=1)] != whole


def test_in_sync_mode_the_learner_scores_every_trained_rsa_round_as_it_was_sampled(fleet, pool):
    """Round 0 at rollout.temperature 1.0, round 1 (the final round) at rsa.final_temperature 0.6: the learner's
    log-probs equal the behaviour log-probs of both, and a teacher-forced pass at the drawn temperature."""
    rsa = RSAConfig(N=4, C=2, T=1, beta=8, tau=4, final_temperature=0.6, final_top_p=1.0, train_rounds=[0, 1])
    samples = collect(fleet, pool, rsa=rsa)
    assert {s.round for s in samples} == {0, 1}
    assert {s.rollout.params.temperature for s in samples if s.round == 1} == {0.6}
    cfg = to_object(compose("rlve", []))
    loop = RLLoop(type("Ctx", (), {"cfg": cfg})(), RLParts(fleet, None, None, None, fleet.tokenizer))
    batch = loop.batch(samples)
    learner = Learner(fleet.worker.engine.model, RLConfig(optimizer="adamw"), device="cpu")
    with torch.no_grad():
        logps, _ = learner._logprobs(learner.model, batch)
    mask = batch.completion_mask > 0
    torch.testing.assert_close(logps[mask], batch.behaviour_logprobs[mask], atol=1e-6, rtol=0)
    final = next(s for s in samples if s.round == 1)
    expected = teacher_forced_logprobs(learner.model, final.rollout.prompt_ids, final.rollout.completion_ids, 0.6)
    torch.testing.assert_close(torch.tensor(final.rollout.logprobs), expected, atol=1e-6, rtol=0)


def test_ttc_aggregation_prompts_use_the_rsa_sections_templates(fleet, pool):
    """An SFT model taught to aggregate with a custom `rsa.aggregation_template` is RL'd on the same wording."""
    ttc = TTCConfig(fraction=1.0, candidates=4, C=2, tau=4)
    custom = RSAConfig(aggregation_template="MERGE {count}: {problem} || {candidates}", candidate_template="<{tail}>")
    for templates, marker in ((custom, "MERGE 2: "), (None, "closing parts of 2 earlier attempts")):
        trained = [s for s in collect(fleet, pool, group_size=4, ttc=ttc, templates=templates) if s.round == 1]
        assert len(trained) == 3 * 4  # every problem asked as an aggregation prompt, a group of 4 each
        prompts = [fleet.tokenizer.decode(s.rollout.prompt_ids) for s in trained]
        assert all(marker in text for text in prompts)
