"""Integer linear systems and the Chinese remainder theorem: answers are unique, so checking is exact."""

from __future__ import annotations

import math
from fractions import Fraction

from posttrain.envs.api import Env, Malformed, Problem, ask, parse_int, parse_ints
from posttrain.envs.registry import register_env

_VARS = "xyzwuvabcdefghjkmnpqrst"


def _determinant(rows: list[list[int]]) -> Fraction:
    """Exact Gaussian elimination; a zero determinant means the system has no unique solution."""
    matrix = [[Fraction(v) for v in row] for row in rows]
    n, det = len(matrix), Fraction(1)
    for col in range(n):
        pivot = next((r for r in range(col, n) if matrix[r][col] != 0), None)
        if pivot is None:
            return Fraction(0)
        if pivot != col:
            matrix[col], matrix[pivot] = matrix[pivot], matrix[col]
            det = -det
        det *= matrix[col][col]
        for r in range(col + 1, n):
            factor = matrix[r][col] / matrix[col][col]
            matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[col], strict=True)]
    return det


def _term(coef: int, var: str, first: bool) -> str:
    sign = "-" if coef < 0 else ("" if first else "+")
    size = abs(coef)
    return f"{sign}{'' if size == 1 else size}{var}"


@register_env(source="builtin")
class LinearSystem(Env):
    """n = 1 + d//2 unknowns with integer solutions; coefficients grow with d. Unbounded up to 23 unknowns."""

    name = "linear_system"
    tags = ("algebra",)
    max_difficulty = 2 * len(_VARS) - 1

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n, span = 1 + min(difficulty, self.max_difficulty) // 2, 2 + difficulty
        while True:
            rows = [[rng.choice([c for c in range(-span, span + 1) if c]) for _ in range(n)] for _ in range(n)]
            if n == 1:
                rows = [[abs(rows[0][0])]]
            if _determinant(rows) != 0:
                break
        solution = [rng.randint(-span, span + 5) for _ in range(n)]
        rhs = [sum(c * v for c, v in zip(row, solution, strict=True)) for row in rows]
        names = _VARS[:n]
        equations = [
            "".join(_term(c, names[i], i == 0) for i, c in enumerate(row)) + f"={b}"
            for row, b in zip(rows, rhs, strict=True)
        ]
        prompt = ask(f"Solve {', '.join(equations)}. Give {' '.join(names)}.")
        return self.problem(seed, difficulty, prompt, " ".join(map(str, solution)), rows=rows, rhs=rhs)

    def check(self, problem: Problem, answer: str) -> bool:
        values = parse_ints(answer)
        if len(values) != len(problem.params["rows"]):
            raise Malformed(f"expected {len(problem.params['rows'])} integers")
        return all(
            sum(c * v for c, v in zip(row, values, strict=True)) == b
            for row, b in zip(problem.params["rows"], problem.params["rhs"], strict=True)
        )


@register_env(source="builtin")
class CRT(Env):
    """Smallest x ≥ 0 with x ≡ r_i (mod m_i) for 2 + d//3 pairwise-coprime moduli up to 5 + 3d."""

    name = "crt"
    tags = ("number-theory",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        count, top = 2 + difficulty // 3, 5 + 3 * difficulty
        moduli: list[int] = []
        candidates = list(range(2, top + 1))
        rng.shuffle(candidates)
        for m in candidates:
            if all(math.gcd(m, other) == 1 for other in moduli):
                moduli.append(m)
            if len(moduli) == count:
                break
        product = math.prod(moduli)
        x = rng.randrange(product)
        rems = [x % m for m in moduli]
        conditions = ", ".join(f"x%{m}={r}" for m, r in zip(moduli, rems, strict=True))
        prompt = ask(f"Smallest x>=0 with {conditions}?")
        return self.problem(seed, difficulty, prompt, str(x), moduli=moduli, rems=rems)

    def check(self, problem: Problem, answer: str) -> bool:
        x = parse_int(answer)
        moduli, rems = problem.params["moduli"], problem.params["rems"]
        return 0 <= x < math.prod(moduli) and all(x % m == r for m, r in zip(moduli, rems, strict=True))
