"""SFT samples generated from verifiable environments and answered by their oracles.

A fixed tenth of all problems (chosen by a hash of the prompt) is never trained on, so held-out
accuracy measures generalisation to problems the model has not seen, not recall.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from functools import partial

from posttrain.data.aggregation import AggregationSpec, aggregation_examples
from posttrain.envs import EnvPool, Problem, Verdict, list_envs, make_env
from posttrain.errors import UserError

Messages = list[dict[str, str]]
AGGREGATION_SEEDS = 5_000_000  # aggregation problems use env seeds from here on, apart from the plain ones


def is_heldout(prompt: str) -> bool:
    return zlib.crc32(prompt.encode()) % 10 == 0


def as_messages(problem: Problem, answer: str) -> Messages:
    return [
        {"role": "user", "content": problem.prompt},
        {"role": "assistant", "content": f"<answer>{answer}</answer>"},
    ]


def _all_builtin(names: Sequence[str]) -> bool:
    builtin = {spec.name for spec in list_envs("builtin")}
    return all(name in builtin for name in names)


def _solved(requests: Sequence[tuple[str, int, int]], pool: EnvPool | None) -> list[tuple[Problem, str]]:
    """Builtin envs run in process (fast, trusted); any other env needs the isolating `pool`."""
    if _all_builtin([name for name, _, _ in requests]):
        problems = [make_env(name).generate(seed, d) for name, seed, d in requests]
        answers = [make_env(p.env).solve(p) for p in problems]
    else:
        if pool is None:
            raise ValueError("non-builtin envs must run in an EnvPool")
        problems = [p for p in pool.generate_many(requests) if p is not None]
        answers = pool.solve_many(problems)
    return [(p, a) for p, a in zip(problems, answers, strict=True) if a is not None]


def _checked(names: Sequence[str]) -> None:
    for name in names:
        make_env(name)  # an unknown name fails here, in the caller, with the closest registered one


def _verified(pairs: list[tuple[Problem, str]], pool: EnvPool | None) -> list[Verdict]:
    """(problem, completion) verdicts: builtin envs in process, any other env through the `pool`."""
    if _all_builtin([p.env for p, _ in pairs]):
        envs = {name: make_env(name) for name in {p.env for p, _ in pairs}}
        return [envs[p.env].verify(p, completion) for p, completion in pairs]
    if pool is None:
        raise ValueError("non-builtin envs must run in an EnvPool")
    return pool.verify_many(pairs)


def _training_pairs(
    tasks: Sequence[str],
    difficulties: Sequence[int],
    count: int,
    rng: random.Random,
    next_seed: int,
    pool: EnvPool | None,
) -> tuple[list[tuple[Problem, str]], int]:
    """`count` (problem, oracle answer) pairs that are not held out, and the next unused env seed."""
    pairs: list[tuple[Problem, str]] = []
    while len(pairs) < count:
        requests = []
        for _ in range(count - len(pairs)):
            requests.append((rng.choice(list(tasks)), next_seed, rng.choice(list(difficulties))))
            next_seed += 1
        solved = _solved(requests, pool)
        if not solved:
            raise RuntimeError(f"envs {sorted(set(tasks))} produced no solvable problem")
        pairs += [(p, a) for p, a in solved if not is_heldout(p.prompt)]
    return pairs[:count], next_seed


def generate(
    tasks: Sequence[str], difficulties: Sequence[int], count: int, seed: int, pool: EnvPool | None = None
) -> list[Messages]:
    """`count` training samples: env and difficulty drawn uniformly from the lists; held-out prompts skipped."""
    _checked(tasks)
    pairs, _ = _training_pairs(tasks, difficulties, count, random.Random(seed), seed * 10_000_000, pool)
    return [as_messages(p, a) for p, a in pairs]


def generate_aggregation(
    tasks: Sequence[str],
    difficulties: Sequence[int],
    count: int,
    seed: int,
    spec: AggregationSpec,
    pool: EnvPool | None = None,
) -> list[Messages]:
    """`count` aggregation examples (see `posttrain.data.aggregation`) on problems `generate` does not draw."""
    _checked(tasks)
    rng = random.Random(f"aggregation:{seed}")
    next_seed = seed * 10_000_000 + AGGREGATION_SEEDS
    examples: list[Messages] = []
    for attempt in range(10):
        if len(examples) >= count:
            break
        pairs, next_seed = _training_pairs(tasks, difficulties, count - len(examples), rng, next_seed, pool)
        examples += aggregation_examples(pairs, spec, partial(_verified, pool=pool), seed=seed * 100 + attempt)
    if len(examples) < count:
        raise UserError(
            f"data.tasks={sorted(set(tasks))} gave too few perturbed answers their verifiers reject, so too few "
            "aggregation examples; lower data.aggregation_fraction or add other tasks"
        )
    return examples[:count]


def heldout_problems(
    task: str, difficulty: int, count: int, seed: int, pool: EnvPool | None = None
) -> list[tuple[Problem, str]]:
    """Up to `count` distinct held-out (problem, oracle answer) pairs of one env at one difficulty.

    Training skips every held-out prompt by its hash, so the seeds scanned here may overlap its seeds.
    """
    _checked([task])
    found: dict[str, tuple[Problem, str]] = {}
    batch = max(64, count * 20)
    for start in range(0, 100 * batch, batch):
        requests = [(task, seed + start + i, difficulty) for i in range(batch)]
        for problem, answer in _solved(requests, pool):
            if is_heldout(problem.prompt):
                found.setdefault(problem.prompt, (problem, answer))
        if len(found) >= count:
            break
    return list(found.values())[:count]


def heldout(task: str, difficulty: int, count: int, seed: int, pool: EnvPool | None = None) -> list[Messages]:
    return [as_messages(p, a) for p, a in heldout_problems(task, difficulty, count, seed, pool)]
