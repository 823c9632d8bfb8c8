"""Every builtin env at difficulties 0-6: deterministic, oracle accepted, wrong answers rejected, junk scored <= 0."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from posttrain.envs import Problem, list_envs, make_env
from posttrain.envs.safe_eval import UnsafeExpression, evaluate
from posttrain.procpool import ProcessPool

BUILTIN = [spec.name for spec in list_envs("builtin")]
DIFFICULTIES = range(7)
CASES = list(itertools.product(BUILTIN, DIFFICULTIES))


def _bump_int(problem: Problem, oracle: str) -> str:
    return str(int(oracle) + 1)


def _bump_first(problem: Problem, oracle: str) -> str:
    values = oracle.split()
    return " ".join([str(int(values[0]) + 1), *values[1:]])


def _bump_last(problem: Problem, oracle: str) -> str:
    values = oracle.split()
    return " ".join([*values[:-1], str(int(values[-1]) + 1)])


def _swap_first_row(problem: Problem, oracle: str) -> str:
    rows = oracle.split("/")
    rows[0] = rows[0][1] + rows[0][0] + rows[0][2:]  # two equal symbols now share a column
    return "/".join(rows)


def _detour(problem: Problem, oracle: str) -> str:
    back = {"U": "D", "D": "U", "L": "R", "R": "L"}
    return oracle + back[oracle[-1]] + oracle[-1]  # still ends at G, two moves too long


def _drop_item(problem: Problem, oracle: str) -> str:
    items = oracle.split()
    return " ".join(items[1:]) if len(items) > 1 else str((int(items[0]) % len(problem.params["weights"])) + 1)


# A wrong answer for each env, wrong by construction (not by asking the env).
WRONG = {
    "pyfunc": lambda p, o: o.replace("return ", "return 1+(", 1) + ")",
    "add": _bump_int,
    "multiply": _bump_int,
    "modexp": lambda p, o: str(int(o) + p.params["m"]),  # the right residue class, but not reduced mod m
    "crt": _bump_int,
    "shortest_path": _bump_int,
    "stack_machine": _bump_int,
    "base_convert": lambda p, o: np.base_repr(p.params["value"] + 1, p.params["dst"]).lower(),
    "sort": _bump_last,
    "linear_system": _bump_first,
    "toposort": lambda p, o: " ".join(reversed(o.split())),  # every constraint a<b is now violated
    "sat3": None,  # checked exhaustively below
    "latin_square": _swap_first_row,
    "countdown": lambda p, o: f"({o})*2",
    "knapsack": _drop_item,
    "maze": _detour,
    "knights_knaves": lambda p, o: ("N" if o[0] == "K" else "K") + o[1:],  # the solution is unique
}

MALFORMED = ["", "no tags at all", "<answer></answer>", "<answer>\x00\xff\ufffd</answer>", "<answer>" + "9" * 10_000]


def test_at_least_sixteen_builtin_envs_with_perturbations():
    assert len(BUILTIN) >= 16
    assert set(BUILTIN) == set(WRONG)


@pytest.mark.parametrize(("name", "difficulty"), CASES)
def test_env_contract(name: str, difficulty: int):
    env = make_env(name)
    problem = env.generate(5, difficulty)
    assert problem == env.generate(5, difficulty)
    assert problem.to_dict() == Problem.from_dict(problem.to_dict()).to_dict()
    assert problem.prompt.endswith("Answer in <answer></answer>.")
    oracle = env.solve(problem)
    assert oracle is not None
    verdict = env.verify(problem, f"<think>maybe 3</think><answer>{oracle}</answer>")
    assert (verdict.reward, verdict.correct, verdict.format_ok) == (1.0, True, True)
    assert env.verify(problem, f"\\boxed{{{oracle}}}").correct
    if WRONG[name] is not None:
        wrong = env.verify(problem, f"<answer>{WRONG[name](problem, oracle)}</answer>")
        assert not wrong.correct and wrong.reward <= 0.0
    for junk in MALFORMED:
        bad = env.verify(problem, junk)
        assert not bad.correct and bad.reward <= 0.0
    assert env.verify(problem, b"\xff\xfe<answer>\x00</answer>").reward <= 0.0
    assert env.verify(problem, None).reward <= 0.0


def test_answer_inside_thinking_does_not_count():
    env = make_env("add")
    problem = env.generate(0, 0)
    assert not env.verify(problem, f"<think><answer>{problem.reference}</answer></think> no answer").correct


def test_seeds_and_difficulties_give_different_problems():
    for name in BUILTIN:
        env = make_env(name)
        prompts = {env.generate(seed, 4).prompt for seed in range(8)}
        assert len(prompts) >= 4, name


def _generate_all(cases: list[tuple[str, int]]) -> list[dict]:
    return [make_env(name).generate(11, difficulty).to_dict() for name, difficulty in cases]


def test_generation_is_identical_in_another_process():
    with ProcessPool(1, timeout_s=120) as pool:
        result = pool.call(_generate_all, CASES)
    assert result.ok, result.error
    assert result.value == _generate_all(CASES)


def _satisfies(clauses: list[list[int]], bits: str) -> bool:
    return all(any((bits[abs(lit) - 1] == "1") == (lit > 0) for lit in clause) for clause in clauses)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_sat3_accepts_exactly_the_satisfying_assignments(difficulty: int):
    env = make_env("sat3")
    problem = env.generate(3, difficulty)
    n = problem.params["n"]
    # The prompt, not the params, is what the model sees: parse the clauses back out of it.
    clauses = [list(map(int, c.split())) for c in re.findall(r"\(([-\d ]+)\)", problem.prompt)]
    outcomes = []
    for bits in itertools.product("01", repeat=n):
        assignment = "".join(bits)
        outcomes.append(_satisfies(clauses, assignment))
        assert env.verify(problem, f"<answer>{assignment}</answer>").correct == outcomes[-1]
    assert any(outcomes) and not all(outcomes)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_arithmetic_references_match_the_prompt(difficulty: int):
    """An independent reading of each prompt: the reference answers the question actually asked."""
    for name, pattern, compute in [
        ("add", r"(\d+)\+(\d+)=\?", lambda a, b: a + b),
        ("multiply", r"(\d+)\*(\d+)=\?", lambda a, b: a * b),
    ]:
        problem = make_env(name).generate(difficulty, difficulty)
        a, b = map(int, re.match(pattern, problem.prompt).groups())
        assert int(problem.reference) == compute(a, b)
        digits = len(str(a)) + len(str(b))
        assert digits == (2 * difficulty + 2 if name == "add" else difficulty + 2)
    problem = make_env("modexp").generate(difficulty, difficulty)
    a, b, m = map(int, re.match(r"(\d+)\^(\d+) mod (\d+)=\?", problem.prompt).groups())
    assert int(problem.reference) == pow(a, b, m)
    problem = make_env("base_convert").generate(difficulty, difficulty)
    text, src, dst = re.match(r"Convert (\w+) from base (\d+) to base (\d+)\.", problem.prompt).groups()
    assert int(problem.reference, int(dst)) == int(text, int(src))
    problem = make_env("sort").generate(difficulty, difficulty)
    values = sorted(map(int, re.match(r"Sort ascending: ([\d ]+)\.", problem.prompt).group(1).split()))
    assert problem.reference == " ".join(map(str, values))


def test_difficulty_zero_is_genuinely_easy():
    for seed in range(20):
        a, b = make_env("add").generate(seed, 0).params.values()
        assert 0 <= a <= 9 and 0 <= b <= 9
        assert len(make_env("sort").generate(seed, 0).params["values"]) == 3
    for name in BUILTIN:
        assert len(make_env(name).generate(0, 0).prompt) < 160, name


@pytest.mark.parametrize(
    ("text", "used"),
    [("(3+4)*5", [3, 4, 5]), ("8/4-1", [8, 4, 1]), ("-2*3", [2, 3]), ("7 × 6", [7, 6])],
)
def test_safe_evaluator_parses_arithmetic(text: str, used: list[int]):
    value, literals = evaluate(text)
    assert literals == used
    assert value == eval(text.replace("×", "*"))


@pytest.mark.parametrize(
    "text",
    ["__import__('os').system('true')", "2**10", "(1).__class__", "[1,2]", "1.5+1", "x+1", "9" * 20, "1/0", "(" * 300],
)
def test_safe_evaluator_rejects_everything_else(text: str):
    with pytest.raises(UnsafeExpression):
        evaluate(text)


def test_countdown_checks_numbers_and_value():
    env = make_env("countdown")
    problem = Problem("countdown", 0, 0, "Use 2 3 ... to make 4.", "2+3-1", {"numbers": [2, 3], "target": 4})
    assert env.verify(problem, "<answer>2*3-2</answer>").correct is False  # 2 used twice
    assert env.verify(problem, "<answer>3+1</answer>").correct is False  # 1 is not given
    assert env.verify(problem, "<answer>2*3</answer>").correct is False  # wrong value
    assert env.verify(problem, "<answer>2/3*3*2</answer>").correct is False  # uses 2 and 3 twice
    assert env.verify(problem, "<answer>2**2</answer>").format_ok is False
    problem.params["numbers"] = [2, 2, 3]
    assert env.verify(problem, "<answer>2*2</answer>").correct is True
    assert env.verify(problem, "<answer>3*2-2</answer>").correct is True


def test_difficulty_beyond_the_tested_range_and_past_max():
    for name in BUILTIN:
        env = make_env(name)
        problem = env.generate(2, 60)  # past the max of bounded envs: clamped, not broken
        assert env.verify(problem, f"<answer>{env.solve(problem)}</answer>").correct, name
