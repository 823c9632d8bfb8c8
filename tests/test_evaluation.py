"""The evaluation library against a scripted engine that answers a known subset correctly: exact pass@1 and
pass@k (hand-worked), answers paired with their own prompts, and reproducible seeded sampling on a real model."""

from __future__ import annotations

import pytest
import torch

from posttrain.envs import EnvPool, EnvsConfig, make_env
from posttrain.evaluation import EvalSet, evaluate_sets, generate_answers, paired_gain
from posttrain.rl.scoring import EnvScorer
from posttrain.rollout.engine import Engine, HFEngine
from posttrain.rollout.types import Completion

ADD = make_env("add")
PROBLEMS = [ADD.generate(seed, 1) for seed in range(8)]


class Scripted(Engine):
    """Answers problem i correctly on its first `right[i]` requests (greedy: when right[i] > 0), wrongly after.
    Each answer names its own problem's reference, so a completion paired with another prompt is wrong."""

    def __init__(self, tokenizer, right: list[int]) -> None:
        super().__init__()
        self.tokenizer, self.right = tokenizer, right
        self.asked: dict[int, int] = {}
        self.by_prompt = {}

    @classmethod
    def load(cls, model_path, *, seed, dtype, device):
        raise NotImplementedError

    def generate(self, prompts, params, seeds=None):
        out = []
        for prompt in prompts:
            i = self.by_prompt[tuple(prompt)]
            self.asked[i] = self.asked.get(i, 0) + 1
            good = self.asked[i] <= self.right[i]
            answer = PROBLEMS[i].reference if good else str(int(PROBLEMS[i].reference) + 1)
            out.append(Completion([1], f"<answer>{answer}</answer>", [0.0], "eos"))
        return out

    def load_state_dict(self, state):
        raise NotImplementedError

    @property
    def context_limit(self):
        return None


@pytest.fixture(scope="module")
def pool():
    with EnvPool(EnvsConfig(workers=1), warm=["add"]) as pool:
        yield pool


def scripted(right):
    from posttrain.models import build_char_tokenizer
    from posttrain.rl.sources import problem_messages
    from posttrain.rollout.chat import encode_messages

    tokenizer = build_char_tokenizer()
    engine = Scripted(tokenizer, right)
    engine.by_prompt = {tuple(encode_messages(tokenizer, problem_messages(p))): i for i, p in enumerate(PROBLEMS)}
    return engine


def test_exact_pass_at_1_and_pass_at_k_for_a_known_subset(pool):
    right = [0, 1, 2, 3, 4, 0, 4, 2]  # correct answers out of 4 samples, per problem
    report = evaluate_sets(
        scripted(right), [EvalSet("add", PROBLEMS, EnvScorer(pool))], [1.0], samples=4, k=2,
        max_new_tokens=4, batch_size=3, seed=0,
    )["add"]["T=1"]  # fmt: skip
    assert report["per_problem"] == [c / 4 for c in right]
    assert report["pass@1"] == pytest.approx(16 / 32)
    pass_at_2 = {0: 0.0, 1: 1 / 2, 2: 5 / 6, 3: 1.0, 4: 1.0}  # 1 - C(4-c, 2) / C(4, 2), worked by hand
    assert report["pass@2"] == pytest.approx(sum(pass_at_2[c] for c in right) / 8)
    assert report["n"] == 8


def test_greedy_scores_one_answer_per_prompt(pool):
    right = [1, 0, 1, 0, 1, 0, 0, 0]
    report = evaluate_sets(
        scripted(right), [EvalSet("add", PROBLEMS, EnvScorer(pool))], [0.0], samples=4, k=4,
        max_new_tokens=4, batch_size=8, seed=0,
    )["add"]["greedy"]  # fmt: skip
    assert report["pass@1"] == pytest.approx(3 / 8) and report["pass@4"] is None


def test_paired_gain_and_its_interval():
    gain, half = paired_gain([0.0, 0.5, 1.0, 0.5], [0.5, 0.5, 1.0, 1.0])
    assert gain == pytest.approx(0.25)
    sd = (sum((d - 0.25) ** 2 for d in (0.5, 0.0, 0.0, 0.5)) / 3) ** 0.5
    assert half == pytest.approx(3.182 * sd / 2)  # Student's t, 3 degrees of freedom (printed tables: 3.182)
    # 200 prompts, half of them gained a point: the normal quantile, sd of a 0/1 half-and-half variable
    gain, half = paired_gain([0.0] * 200, [1.0, 0.0] * 100)
    assert gain == pytest.approx(0.5)
    assert half == pytest.approx(1.96 * (50 / 199) ** 0.5 / 200**0.5)


def test_seed_means_get_students_t_not_the_normal_quantile():
    from posttrain.evaluation import mean_interval

    assert mean_interval([1.0, 2.0, 3.0]) == pytest.approx((2.0, 4.303 * 1.0 / 3**0.5))  # t(2) = 4.303
    assert mean_interval([5.0])[0] == 5.0


@pytest.fixture(scope="module")
def engine():
    return HFEngine.load("zaya-tiny", seed=0, dtype="float32", device="cpu")


def test_sampled_answers_are_seeded_batch_independent_and_leave_the_callers_rng_alone(engine):
    problems = PROBLEMS[:3]
    kwargs = {"temperature": 1.0, "samples": 4, "max_new_tokens": 8}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = generate_answers(engine, problems, batch_size=3, seed=5, **kwargs)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate_answers(engine, problems, batch_size=12, seed=5, **kwargs) == first  # another batching
    assert len({a for group in first for a in group}) > 4  # an untrained model at T=1 samples many strings
    assert generate_answers(engine, problems, batch_size=3, seed=6, **kwargs) != first


def test_greedy_decoding_refuses_several_samples(engine):
    with pytest.raises(ValueError, match="temperature > 0"):
        generate_answers(engine, PROBLEMS[:2], temperature=0.0, samples=2, max_new_tokens=4, batch_size=2, seed=0)
