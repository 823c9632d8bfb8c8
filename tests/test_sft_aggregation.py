"""SFT aggregation examples: the fraction, wrong candidates, correct targets, and the token budget."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from posttrain.config import compose, to_object
from posttrain.data import from_envs
from posttrain.data.aggregation import AggregationSpec, aggregation_examples
from posttrain.data.trimming import token_count
from posttrain.envs import make_env
from posttrain.errors import UserError
from posttrain.models import build_char_tokenizer
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.markovian_rsa import aggregation_prompt
from stages import sft

MARK = "Here are the closing parts of"  # the default aggregation template
ATTEMPT = re.compile(r"Attempt \d+:\n<answer>(.*?)</answer>")


def _config(*overrides: str):
    return to_object(compose("sft", ["eval.num_samples=5", *overrides]))


def _addition(prompt: str) -> int:
    """The test's own oracle: the sum the prompt asks for."""
    a, b = re.match(r"(\d+)\+(\d+)=\?", prompt).groups()
    return int(a) + int(b)


def test_fraction_candidates_and_targets_in_the_sft_data():
    cfg = _config("data.num_train=200", "data.aggregation_fraction=0.25", "data.max_seq_len=512", "rsa.C=4")
    prepared = sft.prepare(cfg)
    aggregated = [s for s in prepared.train if MARK in s[0]["content"]]
    assert len(prepared.train) == 200 and len(aggregated) == 50
    assert prepared.counts["aggregation_kept"] == 50 and prepared.counts["kept"] == 150
    tokenizer = build_char_tokenizer()
    wrong_majorities = 0
    for sample in aggregated:
        user, target = sample[0]["content"], sample[1]["content"]
        problem = user.split("\n\n")[0]
        right = _addition(problem)
        candidates = ATTEMPT.findall(user)
        assert len(candidates) == 4
        assert target == f"<answer>{right}</answer>"
        wrong = [c for c in candidates if int(c) != right]
        assert 1 <= len(wrong) <= 4 and len(set(wrong)) <= 2
        wrong_majorities += len(wrong) > 2
        assert user == aggregation_prompt(problem, [f"<answer>{c}</answer>" for c in candidates], cfg.rsa)
        assert not from_envs.is_heldout(problem)
        assert token_count(sample, tokenizer) <= cfg.data.max_seq_len
    assert wrong_majorities >= 5  # the target has to overrule the majority in a share of the examples
    assert sft.prepare(cfg).train == prepared.train


def test_targets_and_candidates_agree_with_each_envs_verifier():
    """Envs with many right answers (orders, paths) and unique ones: the verifier, not string equality, judges."""
    tasks = ["toposort", "maze", "sort", "knights_knaves", "base_convert", "countdown"]
    pairs = [(make_env(t).generate(seed, 2), None) for t in tasks for seed in range(6)]
    pairs = [(p, make_env(p.env).solve(p)) for p, _ in pairs]
    spec = AggregationSpec(candidates=3, rsa=RSAConfig(), tokenizer=build_char_tokenizer())

    def verify_many(batch):
        return [make_env(p.env).verify(p, completion) for p, completion in batch]

    examples = aggregation_examples(pairs, spec, verify_many, seed=0)
    assert len(examples) >= 0.8 * len(pairs)  # a problem with no wrong answer found is skipped
    by_prompt = {p.prompt: p for p, _ in pairs}
    verdicts = Counter()
    for user, target in ((e[0]["content"], e[1]["content"]) for e in examples):
        problem = by_prompt[user.split("\n\nHere are")[0]]
        assert make_env(problem.env).verify(problem, target).correct
        outcomes = [
            make_env(problem.env).verify(problem, f"<answer>{c}</answer>").correct for c in ATTEMPT.findall(user)
        ]
        assert len(outcomes) == 3 and not all(outcomes)
        verdicts.update(outcomes)
    assert verdicts[True] > 0 and verdicts[False] > verdicts[True]


def test_examples_over_the_budget_are_dropped_by_trimming_and_none_fitting_is_an_error():
    tokenizer = build_char_tokenizer()
    spec = AggregationSpec(candidates=4, rsa=RSAConfig(), tokenizer=tokenizer)
    examples = from_envs.generate_aggregation(["add"], [0, 3], 40, seed=1, spec=spec)
    lengths = sorted(token_count(e, tokenizer) for e in examples)
    budget = lengths[len(lengths) // 2]
    cfg = _config(
        "data.num_train=80", "data.aggregation_fraction=0.5", f"data.max_seq_len={budget}", "data.difficulties=[0,3]"
    )
    prepared = sft.prepare(cfg)
    aggregated = [s for s in prepared.train if MARK in s[0]["content"]]
    assert 0 < prepared.counts["aggregation_dropped"] < 40
    assert len(aggregated) == prepared.counts["aggregation_kept"] == 40 - prepared.counts["aggregation_dropped"]
    assert all(token_count(s, tokenizer) <= budget for s in aggregated)
    with pytest.raises(UserError, match=r"data.max_seq_len=128 fits none of the aggregation examples"):
        sft.prepare(_config("data.num_train=20", "data.aggregation_fraction=0.5"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.aggregation_fraction=1.5", "must be in \\[0, 1\\]"),
        ("data.aggregation_candidates=0", "must be >= 1"),
        ("data.path=x.jsonl", "needs generated data"),
    ],
)
def test_bad_aggregation_settings(override, message):
    with pytest.raises(UserError, match=message):
        _config("data.aggregation_fraction=0.5", override)


def test_default_is_off_and_candidates_follow_rsa_c():
    cfg = _config("data.num_train=30")
    assert cfg.data.aggregation_fraction == 0.0
    assert not any(MARK in s[0]["content"] for s in sft.prepare(cfg).train)
    cfg = _config("data.num_train=10", "data.aggregation_fraction=1.0", "data.max_seq_len=512", "rsa.C=2")
    assert {len(ATTEMPT.findall(s[0]["content"])) for s in sft.prepare(cfg).train} == {2}
