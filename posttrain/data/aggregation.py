"""SFT aggregation examples: teach the model to aggregate before RSA asks it to.

Markovian RSA pays off only for a model trained to read earlier attempts and repair them (ZAYA1 starts
that in SFT). An aggregation example is the prompt RSA builds at round t >= 1 — the problem, C candidate
tails and the aggregation instruction, from `posttrain.rollout.markovian_rsa.aggregation_prompt` — with the
oracle's answer as the target. Candidates are the env's own answer written as the model writes it,
`<answer>...</answer>`, cut to its last τ tokens as RSA cuts traces: some carry the oracle's answer and at
least one carries a perturbed answer that the env's verifier rejects as wrong (well formed, not a format
failure). Wrong answers are drawn from a pool of at most two per problem, so a wrong majority happens and
the target then overrules it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.envs import Problem, Verdict
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.markovian_rsa import aggregation_prompt, tail_text

Messages = list[dict[str, str]]
VerifyMany = Callable[[list[tuple[Problem, str]]], list[Verdict]]
WRONG_POOL = 2  # distinct wrong answers per problem
PERTURB_ROUNDS, PERTURBS_PER_ROUND = 6, 3
_NUMBER = re.compile(r"\d+")


@dataclass
class AggregationSpec:
    candidates: int  # C, the tails in each prompt
    rsa: RSAConfig  # templates and τ, as RSA will use them
    tokenizer: Any


def perturb(answer: str, rng: random.Random, alphabet: str) -> str:
    """A near miss of one of several kinds, so that every env's answers have some: a number moved by 1-3,
    two items or two neighbouring characters swapped, one character replaced by another of `alphabet`
    (the prompt's own letters and digits keep it well formed), one character dropped or repeated."""
    numbers = list(_NUMBER.finditer(answer))
    items = answer.split()
    edits = [kind for kind, usable in (("number", numbers), ("items", len(set(items)) > 1)) if usable]
    edits += ["swap", "replace", "drop", "repeat"] if answer else ["repeat"]
    kind, i = rng.choice(edits), rng.randrange(max(1, len(answer)))
    if kind == "number":
        match = rng.choice(numbers)
        value, delta = int(match.group()), rng.randint(1, 3)
        moved = value + delta if value < delta or rng.random() < 0.5 else value - delta
        return answer[: match.start()] + str(moved) + answer[match.end() :]
    if kind == "items":
        a, b = rng.sample(range(len(items)), 2)
        items[a], items[b] = items[b], items[a]
        return " ".join(items)
    if kind == "swap" and len(answer) >= 2:
        i = min(i, len(answer) - 2)
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2 :]
    if kind == "replace":
        others = sorted(set(alphabet) - {answer[i]})
        return answer[:i] + rng.choice(others) + answer[i + 1 :] if others else answer
    if kind == "drop" and len(answer) >= 2:
        return answer[:i] + answer[i + 1 :]
    return answer[: i + 1] + answer[i:]


def as_completion(answer: str) -> str:
    return f"<answer>{answer}</answer>"


def wrong_answers(pairs: Sequence[tuple[Problem, str]], verify_many: VerifyMany, seed: int) -> list[list[str]]:
    """Up to `WRONG_POOL` distinct perturbed answers per problem that the env's verifier calls wrong.

    Perturbations are verified a few at a time, and only for problems still short of wrong answers, so
    envs whose verifier is costly (a sandbox run) pay for few tries and envs with many right answers
    (orders, assignments) get more."""
    rng = random.Random(f"aggregation-wrong:{seed}")
    pools: list[list[str]] = [[] for _ in pairs]
    tried = [{answer} for _, answer in pairs]
    for _ in range(PERTURB_ROUNDS):
        batch = []
        for i, (problem, answer) in enumerate(pairs):
            if len(pools[i]) < WRONG_POOL:
                alphabet = "".join(sorted({c for c in problem.prompt + answer if c.isalnum()}))
                for wrong in (perturb(answer, rng, alphabet) for _ in range(PERTURBS_PER_ROUND)):
                    if wrong not in tried[i]:
                        tried[i].add(wrong)
                        batch.append((i, wrong))
        if not batch:
            break
        verdicts = verify_many([(pairs[i][0], as_completion(wrong)) for i, wrong in batch])
        for (i, wrong), verdict in zip(batch, verdicts, strict=True):
            if not verdict.correct and verdict.format_ok and len(pools[i]) < WRONG_POOL:
                pools[i].append(wrong)
    return pools


def aggregation_example(
    problem: Problem, answer: str, wrong: Sequence[str], spec: AggregationSpec, rng: random.Random
) -> Messages:
    """One example: 0..C-1 tails carry the oracle's answer, the rest a wrong one from `wrong`."""
    right = rng.randrange(spec.candidates)
    answers = [answer] * right + [rng.choice(list(wrong)) for _ in range(spec.candidates - right)]
    rng.shuffle(answers)
    tok = spec.tokenizer
    tails = [tail_text(as_completion(a), spec.rsa.tau, tok) for a in answers]
    return [
        {"role": "user", "content": aggregation_prompt(problem.prompt, tails, spec.rsa)},
        {"role": "assistant", "content": as_completion(answer)},
    ]


def aggregation_examples(
    pairs: Sequence[tuple[Problem, str]], spec: AggregationSpec, verify_many: VerifyMany, seed: int
) -> list[Messages]:
    """An example per (problem, oracle answer) that has a wrong answer to offer; the others are skipped."""
    rng = random.Random(f"aggregation:{seed}")
    pools = wrong_answers(pairs, verify_many, seed)
    return [
        aggregation_example(problem, answer, pool, spec, rng)
        for (problem, answer), pool in zip(pairs, pools, strict=True)
        if pool
    ]
