"""Puzzles with many right answers, each checked against the rules rather than against one reference."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

from posttrain.envs.api import Env, Malformed, Problem, ask, parse_ints
from posttrain.envs.registry import register_env
from posttrain.envs.safe_eval import UnsafeExpression, evaluate

_SYMBOLS = "123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@register_env(source="builtin")
class LatinSquare(Env):
    """Fill the blanks (.) of an n×n Latin square, n = 3 + d//3, with d + 1 blanks (capped so clues remain)."""

    name = "latin_square"
    tags = ("puzzles",)
    max_difficulty = 3 * (len(_SYMBOLS) - 3) + 2

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = 3 + min(difficulty, self.max_difficulty) // 3
        rows, cols, symbols = list(range(n)), list(range(n)), list(_SYMBOLS[:n])
        rng.shuffle(rows)
        rng.shuffle(cols)
        rng.shuffle(symbols)
        square = ["".join(symbols[(r + c) % n] for c in cols) for r in rows]
        blanks = set(rng.sample(range(n * n), min(difficulty + 1, n * n - n)))
        puzzle = ["".join("." if r * n + c in blanks else square[r][c] for c in range(n)) for r in range(n)]
        prompt = ask(f"Fill the Latin square {'/'.join(puzzle)} (. blank). Give rows joined by /.")
        return self.problem(seed, difficulty, prompt, "/".join(square), puzzle=puzzle)

    def check(self, problem: Problem, answer: str) -> bool:
        puzzle = problem.params["puzzle"]
        n = len(puzzle)
        rows = answer.replace(" ", "").upper().split("/")
        if len(rows) != n or any(len(row) != n for row in rows):
            raise Malformed(f"expected {n} rows of {n} symbols")
        symbols = set(_SYMBOLS[:n])
        keeps_clues = all(p in (".", a) for p, a in zip("".join(puzzle), "".join(rows), strict=True))
        lines = rows + ["".join(col) for col in zip(*rows, strict=True)]
        return keeps_clues and all(set(line) == symbols for line in lines)


@register_env(source="builtin")
class Countdown(Env):
    """Reach the target with + - * / over 2 + d//2 given numbers, each used at most once."""

    name = "countdown"
    tags = ("puzzles", "arithmetic")

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        count = 2 + difficulty // 2
        while True:
            numbers = [rng.randint(1, 9 + 2 * difficulty) for _ in range(count)]
            expression, value, additive = str(numbers[0]), Fraction(numbers[0]), False
            for number in numbers[1:]:
                op = rng.choice("+-*/")
                candidate = {"+": value + number, "-": value - number, "*": value * number, "/": value / number}[op]
                if candidate.denominator != 1 or candidate <= 0:
                    op, candidate = "+", value + number
                if op in "*/" and additive:
                    expression = f"({expression})"
                expression, value, additive = f"{expression}{op}{number}", candidate, op in "+-"
            if value.denominator == 1 and value > 0:
                break
        shown = sorted(numbers)
        prompt = ask(f"Use {' '.join(map(str, shown))} (each at most once) with +-*/ to make {value}.")
        return self.problem(seed, difficulty, prompt, expression, numbers=shown, target=int(value))

    def check(self, problem: Problem, answer: str) -> bool:
        try:
            value, used = evaluate(answer)
        except UnsafeExpression as exc:
            raise Malformed(str(exc)) from None
        if Counter(used) - Counter(problem.params["numbers"]):
            return False
        return value == problem.params["target"]


def knapsack_optimum(weights: list[int], values: list[int], capacity: int) -> tuple[int, list[int]]:
    """Dynamic programming over capacity; returns the best value and one optimal item set (1-based)."""
    best = [[0] * (capacity + 1) for _ in range(len(weights) + 1)]
    for i, (w, v) in enumerate(zip(weights, values, strict=True), start=1):
        for c in range(capacity + 1):
            best[i][c] = max(best[i - 1][c], best[i - 1][c - w] + v if w <= c else 0)
    chosen, c = [], capacity
    for i in range(len(weights), 0, -1):
        if best[i][c] != best[i - 1][c]:
            chosen.append(i)
            c -= weights[i - 1]
    return best[-1][capacity], sorted(chosen)


@register_env(source="builtin")
class Knapsack(Env):
    """Pick items (1-based) of total weight ≤ capacity with the DP-optimal value; n = d + 2 items."""

    name = "knapsack"
    tags = ("optimization",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = difficulty + 2
        weights = [rng.randint(1, 9) for _ in range(n)]
        values = [rng.randint(1, 9) for _ in range(n)]
        capacity = max(1, sum(weights) // 2)
        items = " ".join(f"{i}:w{w}v{v}" for i, (w, v) in enumerate(zip(weights, values, strict=True), start=1))
        prompt = ask(f"Knapsack cap {capacity}, items {items}. Best item numbers?")
        _, chosen = knapsack_optimum(weights, values, capacity)
        return self.problem(
            seed, difficulty, prompt, " ".join(map(str, chosen)), weights=weights, values=values, capacity=capacity
        )

    def check(self, problem: Problem, answer: str) -> bool:
        params = problem.params
        picked = parse_ints(answer)
        if len(set(picked)) != len(picked) or not all(1 <= i <= len(params["weights"]) for i in picked):
            raise Malformed("item numbers must be distinct and in range")
        weight = sum(params["weights"][i - 1] for i in picked)
        value = sum(params["values"][i - 1] for i in picked)
        optimum, _ = knapsack_optimum(params["weights"], params["values"], params["capacity"])
        return weight <= params["capacity"] and value == optimum
