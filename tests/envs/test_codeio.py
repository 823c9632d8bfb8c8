"""`rg:codeio` grading on real items shipped in reasoning-gym: strict JSON, inputs checked by running them."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from posttrain.envs import Problem, make_env
from posttrain.envs.adapters.codeio import CodeIOEnv, same_json
from posttrain.envs.adapters.reasoning_gym import ReasoningGymEnv, _entry
from posttrain.procpool import ProcessPool

SEEDS = [(seed, seed % 4) for seed in range(16)]  # (seed, level): every curriculum level of the dataset


def _answer(value) -> str:
    """The value written as JSON inside the answer tags."""
    return f"<answer>{json.dumps(value)}</answer>"


def _tagged(text: str) -> str:
    return f"<answer>{text}</answer>"


def _main_solution(code: str, inputs: str):
    """Runs a dataset program directly, in a fresh pool process: the test's own oracle for inputs."""
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, namespace)
        return json.loads(json.dumps(namespace["main_solution"](**json.loads(inputs))))


def _perturbed(value):
    """The same JSON with its first leaf changed (by more than the float tolerance); None when it has none."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 1.0
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        for i, item in enumerate(value):
            changed = _perturbed(item)
            if changed is not None:
                return [*value[:i], changed, *value[i + 1 :]]
    if isinstance(value, dict):
        for key, item in value.items():
            changed = _perturbed(item)
            if changed is not None:
                return {**value, key: changed}
    return None


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    env = make_env("rg:codeio")
    return [env.generate(seed, level) for seed, level in SEEDS]


@pytest.fixture(scope="module")
def oracle_pool():
    with ProcessPool(1, timeout_s=10) as pool:
        yield pool


SAME = [
    (1, 1.0),
    (0.1 + 0.2, 0.3),
    (1e20, 1e20 * (1 + 1e-12)),
    ({"a": [1, "x", None], "b": True}, {"b": True, "a": [1, "x", None]}),
    ([], []),
    (float("nan"), float("nan")),
]
DIFFERENT = [
    (True, 1),
    (False, 0),
    (None, 0),
    ("1", 1),
    (1, 2),
    (0.001, 0.0011),
    (1e-300, 0.0),
    ([1, 2], [2, 1]),
    ([1], [1, 1]),
    ({"a": 1}, {"a": 1, "b": 2}),
    ({"a": 1}, {"A": 1}),
    ([1], {"0": 1}),
    (math.inf, -math.inf),
    (10**400, 1e308),  # beyond any float: no OverflowError, just different
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_same_json_accepts(a, b):
    assert same_json(a, b) and same_json(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_same_json_rejects(a, b):
    assert not same_json(a, b) and not same_json(b, a)


def test_items_cover_both_directions_and_carry_their_grading(problems):
    assert {p.params["direction"] for p in problems} == {"input", "output"}
    for problem in problems:
        assert problem.prompt.endswith("Answer in <answer></answer>.")
        assert "def main_solution(" in problem.params["code"] and problem.params["code"] in problem.prompt
        reference = problem.params["output" if problem.params["direction"] == "output" else "input"]
        assert problem.reference == reference
        assert Problem.from_dict(json.loads(json.dumps(problem.to_dict()))) == problem


def test_recorded_outputs_come_back_when_the_program_runs_again(problems, oracle_pool):
    for problem in problems:
        result = oracle_pool.call(_main_solution, problem.params["code"], problem.params["input"])
        assert result.ok, result.error
        assert same_json(result.value, json.loads(problem.params["output"])), problem.seed


def test_reference_answers_pass_in_any_json_layout(problems):
    env = make_env("rg:codeio")
    for problem in problems:
        reference = json.loads(problem.reference)
        for text in (problem.reference, json.dumps(reference, indent=2), json.dumps(reference, separators=(",", ":"))):
            verdict = env.verify(problem, _tagged(text))
            assert (verdict.reward, verdict.correct) == (1.0, True), (problem.seed, verdict)
        padded = env.verify(problem, _tagged(f"The answer is {problem.reference}"))
        assert (padded.reward, padded.format_ok) == (0.0, False)


def test_wrong_outputs_fail(problems):
    env = make_env("rg:codeio")
    for problem in (p for p in problems if p.params["direction"] == "output"):
        wrong = _perturbed(json.loads(problem.reference))
        assert wrong is not None
        verdict = env.verify(problem, _answer(wrong))
        assert (verdict.reward, verdict.correct, verdict.format_ok) == (0.0, False, True), problem.seed


def test_changed_inputs_are_judged_by_what_the_program_returns(problems, oracle_pool):
    """A changed input is right exactly when the program, run directly, still gives the recorded output."""
    env = make_env("rg:codeio")
    outcomes = []
    for problem in (p for p in problems if p.params["direction"] == "input"):
        changed = _perturbed(json.loads(problem.reference))
        result = oracle_pool.call(_main_solution, problem.params["code"], json.dumps(changed))
        expected = result.ok and same_json(result.value, json.loads(problem.params["output"]))
        verdict = env.verify(problem, _answer(changed))
        assert verdict.correct == expected and verdict.info["ran"], (problem.seed, changed, verdict)
        outcomes.append(expected)
    assert False in outcomes


def test_another_feasible_input_is_right(oracle_pool):
    """Item (seed 24, level 1) asks for any input under which a tower falls to the hero ("YES"). reasoning-gym
    scores only its own input as right; any input that makes the program print "YES" is."""
    env = make_env("rg:codeio")
    problem = env.generate(24, 1)
    assert (problem.params["direction"], problem.params["output"], problem.params["attempt"]) == ("input", '"YES"', 0)
    other = {"T": 1, "s": 878, "n": 4, "d": 15, "x": 121, "y": 77, "t0": 4, "t1": 2, "t2": 5}
    losing = {**other, "x": 1, "y": 1, "s": 100_000}
    assert oracle_pool.call(_main_solution, problem.params["code"], json.dumps(other)).value == "YES"
    assert oracle_pool.call(_main_solution, problem.params["code"], json.dumps(losing)).value == "NO"
    assert env.verify(problem, _answer(other)).correct
    assert not env.verify(problem, _answer(losing)).correct
    assert not ReasoningGymEnv("codeio").verify(problem, _answer(other)).correct  # upstream's score: 0.01


def test_upstream_scorer_calls_true_equal_to_one_and_strict_does_not():
    dataset, _ = _entry("codeio", 0, 0)
    item = {"answer": '{"found": 1}'}
    assert dataset.score_answer('{"found": true}', item) == 1.0
    params = {"direction": "output", "code": "", "input": "{}", "output": '{"found": 1}'}
    problem = Problem("rg:codeio", 0, 0, "?", '{"found": 1}', params)
    assert not CodeIOEnv().verify(problem, _tagged('{"found": true}')).correct
    assert CodeIOEnv().verify(problem, _tagged('{"found": 1.0}')).correct


def test_hostile_and_malformed_answers_score_zero(problems):
    env = make_env("rg:codeio")
    hero = env.generate(24, 1)
    never_falls = {"T": 1, "s": 10**18, "n": 0, "d": 0, "x": 0, "y": 0, "t0": 1, "t1": 1, "t2": 1}
    verdict = env.verify(hero, _answer(never_falls))  # the program's loop never ends: the sandbox stops it
    assert (verdict.reward, verdict.info["status"]) == (0.0, "timeout")
    for answer in ([1, 2], "YES", {"T": 1}, {"__import__('os')": 1}, 10**400):
        assert env.verify(hero, _answer(answer)).reward == 0.0
    for junk in ("<answer>" + "[" * 100_000 + "</answer>", "<answer>{'T': 1}</answer>", "", None, b"\xff"):
        verdict = env.verify(hero, junk)
        assert (verdict.reward, verdict.format_ok) == (0.0, False)
    deep = "<answer>" + "[" * 900 + "]" * 900 + "</answer>"  # parses as JSON, nests too deep to compare
    assert env.verify(problems[0], deep).reward == 0.0
