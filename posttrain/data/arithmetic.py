"""Builtin SFT tasks with oracle answers: multi-digit arithmetic.

A fixed tenth of all operand pairs is held out by a hash, so held-out accuracy measures
generalisation to pairs never seen in training, not recall.
"""

from __future__ import annotations

import random
import zlib

Messages = list[dict[str, str]]

OPERATORS = {"add": ("+", lambda a, b: a + b), "mul": ("*", lambda a, b: a * b)}
MAX_DIGITS = {"add": 3, "mul": 2}


def is_heldout(task: str, a: int, b: int) -> bool:
    return zlib.crc32(f"{task}:{a}:{b}".encode()) % 10 == 0


def problem(task: str, a: int, b: int) -> Messages:
    symbol, op = OPERATORS[task]
    return [
        {"role": "user", "content": f"What is {a}{symbol}{b}?"},
        {"role": "assistant", "content": f"<answer>{op(a, b)}</answer>"},
    ]


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def generate(tasks: list[str], count: int, seed: int) -> list[Messages]:
    """Training problems: operands of 1..MAX_DIGITS digits, never a held-out pair."""
    rng = random.Random(seed)
    samples: list[Messages] = []
    while len(samples) < count:
        task = tasks[len(samples) % len(tasks)]
        a = _operand(rng, rng.randint(1, MAX_DIGITS[task]))
        b = _operand(rng, rng.randint(1, MAX_DIGITS[task]))
        if not is_heldout(task, a, b):
            samples.append(problem(task, a, b))
    return samples


def heldout(task: str, count: int, seed: int, digits: int = 2) -> list[Messages]:
    """Held-out problems with both operands of exactly `digits` digits."""
    rng = random.Random(seed)
    samples: list[Messages] = []
    while len(samples) < count:
        a, b = _operand(rng, digits), _operand(rng, digits)
        if is_heldout(task, a, b):
            samples.append(problem(task, a, b))
    return samples
