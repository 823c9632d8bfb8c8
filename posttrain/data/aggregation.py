"""SFT aggregation examples: teach the model to aggregate before RSA asks it to.

Markovian RSA pays off only for a model trained to read earlier attempts and repair them (ZAYA1 starts
that in SFT). An aggregation example is the prompt RSA builds at round t >= 1 — the problem, C candidate
tails and the aggregation instruction, from `posttrain.rollout.markovian_rsa.aggregation_prompt` — with the
oracle's answer as the target. Candidates are the env's own answer written as the model writes it,
`<answer>...</answer>`, cut to its last τ tokens as RSA cuts traces: some carry the oracle's answer and at
least one carries a perturbed answer that the env's verifier rejects. Wrong answers are drawn from a pool
of at most two per problem, so a wrong majority happens and the target then overrules it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from posttrain.envs import Problem, Verdict
from posttrain.rollout.config import RSAConfig
from posttrain.rollout.markovian_rsa import aggregation_prompt, last_tokens, reasoning, strip_special

Messages = list[dict[str, str]]
VerifyMany = Callable[[list[tuple[Problem, str]]], list[Verdict]]
WRONG_POOL = 2  # distinct wrong answers per problem
PERTURB_TRIES = 8
_NUMBER = re.compile(r"\d+")


@dataclass
class AggregationSpec:
    candidates: int  # C, the tails in each prompt
    rsa: RSAConfig  # templates and τ, as RSA will use them
    tokenizer: Any


def perturb(answer: str, rng: random.Random) -> str:
    """A near miss: one number moved by 1-3, else two neighbouring characters swapped."""
    numbers = list(_NUMBER.finditer(answer))
    if numbers:
        match = rng.choice(numbers)
        value = int(match.group())
        delta = rng.randint(1, 3)
        moved = value + delta if value < delta or rng.random() < 0.5 else value - delta
        return answer[: match.start()] + str(moved) + answer[match.end() :]
    if len(answer) >= 2:
        i = rng.randrange(len(answer) - 1)
        return answer[:i] + answer[i + 1] + answer[i] + answer[i + 2 :]
    return answer + answer


def as_completion(answer: str) -> str:
    return f"<answer>{answer}</answer>"


def wrong_answers(pairs: Sequence[tuple[Problem, str]], verify_many: VerifyMany, seed: int) -> list[list[str]]:
    """Up to `WRONG_POOL` distinct perturbed answers per problem, each one rejected by the env's verifier."""
    rng = random.Random(f"aggregation-wrong:{seed}")
    tries = []
    for _, answer in pairs:
        distinct = dict.fromkeys(perturb(answer, rng) for _ in range(PERTURB_TRIES))
        tries.append([w for w in distinct if w != answer])
    flat = [(problem, as_completion(w)) for (problem, _), ws in zip(pairs, tries, strict=True) for w in ws]
    verdicts = verify_many(flat)
    pools, start = [], 0
    for ws in tries:
        judged = zip(ws, verdicts[start : start + len(ws)], strict=True)
        pools.append([w for w, v in judged if not v.correct and v.format_ok][:WRONG_POOL])
        start += len(ws)
    return pools


def aggregation_example(
    problem: Problem, answer: str, wrong: Sequence[str], spec: AggregationSpec, rng: random.Random
) -> Messages:
    """One example: 0..C-1 tails carry the oracle's answer, the rest a wrong one from `wrong`."""
    right = rng.randrange(spec.candidates)
    answers = [answer] * right + [rng.choice(list(wrong)) for _ in range(spec.candidates - right)]
    rng.shuffle(answers)
    tok = spec.tokenizer
    tails = [last_tokens(strip_special(reasoning(as_completion(a)), tok), spec.rsa.tau, tok) for a in answers]
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
