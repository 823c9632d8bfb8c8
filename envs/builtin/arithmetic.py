"""Integer arithmetic: the easiest envs, where difficulty 0 is one-digit work a tiny model can learn."""

from __future__ import annotations

import re

from posttrain.envs.api import Env, Malformed, Problem, ask, parse_int
from posttrain.envs.registry import register_env


def _number(rng, digits: int) -> int:
    """A uniformly random integer with exactly `digits` digits (0-9 when digits == 1)."""
    return rng.randrange(0, 10) if digits == 1 else rng.randrange(10 ** (digits - 1), 10**digits)


class _IntegerAnswer(Env):
    def check(self, problem: Problem, answer: str) -> bool:
        return parse_int(answer) == int(problem.reference or "0")


@register_env(source="builtin")
class Add(_IntegerAnswer):
    """Difficulty d adds two (d+1)-digit numbers."""

    name = "add"
    tags = ("arithmetic",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        a, b = _number(rng, difficulty + 1), _number(rng, difficulty + 1)
        return self.problem(seed, difficulty, ask(f"{a}+{b}=?"), str(a + b), a=a, b=b)


@register_env(source="builtin")
class Multiply(_IntegerAnswer):
    """Difficulty d multiplies numbers whose digit counts sum to d+2."""

    name = "multiply"
    tags = ("arithmetic",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        a, b = _number(rng, difficulty // 2 + 1), _number(rng, (difficulty + 1) // 2 + 1)
        return self.problem(seed, difficulty, ask(f"{a}*{b}=?"), str(a * b), a=a, b=b)


@register_env(source="builtin")
class ModExp(_IntegerAnswer):
    """a^b mod m; exponent and modulus grow with d."""

    name = "modexp"
    tags = ("arithmetic", "number-theory")

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        m = rng.randrange(2, 10 * (difficulty + 1) ** 2 + 1)
        a, b = rng.randrange(1, max(3, m)), rng.randrange(1, 3 * difficulty + 3)
        return self.problem(seed, difficulty, ask(f"{a}^{b} mod {m}=?"), str(pow(a, b, m)), a=a, b=b, m=m)


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _to_base(value: int, base: int) -> str:
    out = ""
    while True:
        value, digit = divmod(value, base)
        out = _DIGITS[digit] + out
        if value == 0:
            return out


@register_env(source="builtin")
class BaseConvert(Env):
    """Convert between bases 2..16; d=0 is a number below 8 from decimal to binary."""

    name = "base_convert"
    tags = ("arithmetic",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        value = rng.randrange(0, 2 ** (3 + 2 * difficulty))
        if difficulty == 0:
            src, dst = 10, 2
        else:
            src, dst = rng.sample(range(2, min(16, 2 + 2 * difficulty) + 1), 2) if difficulty > 1 else (2, 10)
        text = _to_base(value, src)
        prompt = ask(f"Convert {text} from base {src} to base {dst}.")
        return self.problem(seed, difficulty, prompt, _to_base(value, dst), value=value, src=src, dst=dst)

    def check(self, problem: Problem, answer: str) -> bool:
        base = problem.params["dst"]
        text = answer.strip().lower()
        if not re.fullmatch(f"[{re.escape(_DIGITS[:base])}]+", text) or len(text) > 4000:
            raise Malformed(f"not a base-{base} number")
        return int(text, base) == problem.params["value"]
