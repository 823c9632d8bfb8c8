"""SFT samples generated from verifiable environments and answered by their oracles.

A fixed tenth of all problems (chosen by a hash of the prompt) is never trained on, so held-out
accuracy measures generalisation to problems the model has not seen, not recall.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

from posttrain.envs import EnvPool, Problem, list_envs, make_env

Messages = list[dict[str, str]]


def is_heldout(prompt: str) -> bool:
    return zlib.crc32(prompt.encode()) % 10 == 0


def as_messages(problem: Problem, answer: str) -> Messages:
    return [
        {"role": "user", "content": problem.prompt},
        {"role": "assistant", "content": f"<answer>{answer}</answer>"},
    ]


def _solved(requests: Sequence[tuple[str, int, int]], pool: EnvPool | None) -> list[tuple[Problem, str]]:
    """Builtin envs run in process (fast, trusted); any other env needs the isolating `pool`."""
    builtin = {spec.name for spec in list_envs("builtin")}
    if all(name in builtin for name, _, _ in requests):
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


def generate(
    tasks: Sequence[str], difficulties: Sequence[int], count: int, seed: int, pool: EnvPool | None = None
) -> list[Messages]:
    """`count` training samples: env and difficulty drawn uniformly from the lists; held-out prompts skipped."""
    _checked(tasks)
    rng = random.Random(seed)
    samples: list[Messages] = []
    next_seed = seed * 10_000_000
    while len(samples) < count:
        requests = []
        for _ in range(count - len(samples)):
            requests.append((rng.choice(list(tasks)), next_seed, rng.choice(list(difficulties))))
            next_seed += 1
        solved = _solved(requests, pool)
        if not solved:
            raise RuntimeError(f"envs {sorted(set(tasks))} produced no solvable problem")
        samples += [as_messages(p, a) for p, a in solved if not is_heldout(p.prompt)]
    return samples[:count]


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
