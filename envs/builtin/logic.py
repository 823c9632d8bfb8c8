"""Propositional logic: planted 3-SAT (any satisfying assignment is correct) and knights and knaves."""

from __future__ import annotations

import itertools

from posttrain.envs.api import Env, Malformed, Problem, ask
from posttrain.envs.registry import register_env


def satisfies(clauses: list[list[int]], bits: str) -> bool:
    """Literal k > 0 means variable k is 1; k < 0 means it is 0. Variables count from 1."""
    return all(any((bits[abs(lit) - 1] == "1") == (lit > 0) for lit in clause) for clause in clauses)


@register_env(source="builtin")
class Sat3(Env):
    """n = d + 3 variables, about 4.2·n clauses, all satisfied by a hidden (planted) assignment."""

    name = "sat3"
    tags = ("logic",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = difficulty + 3
        planted = "".join(rng.choice("01") for _ in range(n))
        clauses: list[list[int]] = []
        while len(clauses) < round(4.2 * n) - 8 or len(clauses) < 2:
            variables = rng.sample(range(1, n + 1), 3)
            clause = [v if rng.random() < 0.5 else -v for v in variables]
            if satisfies([clause], planted):
                clauses.append(clause)
        text = " ".join("(" + " ".join(map(str, clause)) + ")" for clause in clauses)
        prompt = ask(f"3-SAT over x1..x{n}, -k means not xk: {text}. Give x1..x{n} as 0/1 bits.")
        return self.problem(seed, difficulty, prompt, planted, n=n, clauses=clauses)

    def check(self, problem: Problem, answer: str) -> bool:
        bits = answer.replace(" ", "")
        if len(bits) != problem.params["n"] or set(bits) - {"0", "1"}:
            raise Malformed(f"expected {problem.params['n']} bits")
        return satisfies(problem.params["clauses"], bits)


def _truth(statement: list, knights: tuple[bool, ...]) -> bool:
    kind, a, b = statement
    return {
        "knight": knights[a],
        "knave": not knights[a],
        "both": knights[a] and knights[b],
        "either": knights[a] or knights[b],
        "same": knights[a] == knights[b],
    }[kind]


def _say(statement: list) -> str:
    kind, a, b = statement
    x, y = chr(65 + a), chr(65 + b)
    return {
        "knight": f"{x} is a knight",
        "knave": f"{x} is a knave",
        "both": f"{x} and {y} are knights",
        "either": f"{x} or {y} is a knight",
        "same": f"{x} and {y} are the same",
    }[kind]


def _consistent(statements: list[list], knights: tuple[bool, ...]) -> bool:
    """Knights say true things and knaves false ones."""
    return all(_truth(s, knights) == knights[i] for i, s in enumerate(statements))


@register_env(source="builtin")
class KnightsKnaves(Env):
    """2 + d//2 islanders, one statement each, exactly one consistent assignment (checked by brute force,
    which caps the size at 12 islanders)."""

    name = "knights_knaves"
    tags = ("logic",)
    max_difficulty = 20

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)
        n = 2 + min(difficulty, self.max_difficulty) // 2
        while True:
            knights = tuple(rng.random() < 0.5 for _ in range(n))
            statements = []
            for speaker in range(n):
                while True:
                    a, b = rng.choice([p for p in range(n) if p != speaker]), rng.randrange(n)
                    statement = [rng.choice(["knight", "knave", "both", "either", "same"]), a, b]
                    meaningful = statement[0] in ("knight", "knave") or a != b
                    if meaningful and _truth(statement, knights) == knights[speaker]:
                        statements.append(statement)
                        break
            solutions = [k for k in itertools.product([True, False], repeat=n) if _consistent(statements, k)]
            if len(solutions) == 1:
                break
        said = "; ".join(f"{chr(65 + i)}: {_say(s)}" for i, s in enumerate(statements))
        prompt = ask(f"Knights tell truth, knaves lie. {said}. Give K/N for {''.join(chr(65 + i) for i in range(n))}.")
        reference = "".join("K" if k else "N" for k in knights)
        return self.problem(seed, difficulty, prompt, reference, statements=statements)

    def check(self, problem: Problem, answer: str) -> bool:
        letters = answer.replace(" ", "").upper()
        n = len(problem.params["statements"])
        if len(letters) != n or set(letters) - {"K", "N"}:
            raise Malformed(f"expected {n} letters K/N")
        return _consistent(problem.params["statements"], tuple(c == "K" for c in letters))
