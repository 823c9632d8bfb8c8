"""`pyfunc`: oracle programs pass their own held tests in the sandbox, near misses and hostile code fail."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from posttrain.envs import EnvPool, EnvsConfig, Problem, make_env
from posttrain.envs.builtin.synthesis import PyFuncAllOrNothing, mutants, program_source
from posttrain.models import build_char_tokenizer
from posttrain.procpool import ProcessPool

DIFFICULTIES = range(9)


def _answer(code: str) -> str:
    return f"<answer>{code}</answer>"


def _exec_f(source: str):
    namespace: dict = {}
    exec(source, namespace)  # our own generated oracle, not model output
    return namespace["f"]


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_oracle_source_computes_the_examples_and_tests(difficulty: int):
    """The oracle's Python source, run by the interpreter, gives every value the prompt shows and every
    held test expects (those values come from the generator's own evaluator, not from this source)."""
    env = make_env("pyfunc")
    for seed in range(150):
        problem = env.generate(seed, difficulty)
        f = _exec_f(env.solve(problem))
        shown = [(int(x), int(y)) for x, y in re.findall(r"f\((-?\d+)\)=(-?\d+)", problem.prompt)]
        assert [x for x, _ in shown] == problem.params["shown"]
        assert all(f(x) == y for x, y in shown)
        assert all(f(x) == y for x, y in problem.params["tests"])
        assert len({y for _, y in shown}) >= 2
        assert not {x for x, _ in shown} & {x for x, _ in problem.params["tests"]}  # held tests are unseen


def test_difficulty_grows_the_chain_and_the_families():
    env = make_env("pyfunc")
    chains = {d: [env.generate(s, d).params["ops"] for s in range(40)] for d in DIFFICULTIES}
    assert all(len(ops) == 1 and ops[0][0] in ("add", "sub", "mul") for ops in chains[0])
    assert {len(ops) for d in (1, 2) for ops in chains[d]} == {2}
    assert {len(ops) for ops in chains[8]} == {5}
    families = {d: {op[0] for ops in chains[d] for op in ops} for d in DIFFICULTIES}
    assert families[1] == {"add", "sub", "mul"}
    assert {"floordiv", "mod", "square"} <= families[2] and not {"abs", "cond"} & families[3]
    assert {"abs", "max", "cond"} <= families[8]
    assert min(x for s in range(40) for x in env.generate(s, 6).params["shown"]) < 0  # negative inputs from d=4


def _verify_all(env, problem_answers: list[tuple[Problem, str]]):
    with ThreadPoolExecutor(2) as executor:  # two sandboxes at a time, the default bound on 2 cores
        return list(executor.map(lambda pa: env.verify(pa[0], _answer(pa[1])), problem_answers))


def test_oracles_pass_and_near_misses_fail_in_the_sandbox():
    env, strict = make_env("pyfunc"), PyFuncAllOrNothing()
    problems = [env.generate(seed, d) for d in DIFFICULTIES for seed in (1, 2)]
    verdicts = _verify_all(env, [(p, env.solve(p)) for p in problems])
    for problem, verdict in zip(problems, verdicts, strict=True):
        assert (verdict.reward, verdict.correct) == (1.0, True), (problem.reference, verdict)
        assert verdict.info["passed"] == verdict.info["total"] == 5
    off_by_one = [(p, p.reference.replace("return ", "return 1+(", 1) + ")") for p in problems]
    near_miss = [(p, program_source(mutants(p.params["ops"])[0])) for p in problems]
    for problem, verdict in zip(problems * 2, _verify_all(strict, off_by_one + near_miss), strict=True):
        assert (verdict.reward, verdict.correct, verdict.format_ok) == (0.0, False, True), problem.reference


def test_reward_is_the_pass_fraction_and_all_or_nothing_is_binary():
    env, strict = make_env("pyfunc"), PyFuncAllOrNothing()
    problem = env.generate(7, 3)
    known = dict(problem.params["tests"][:2])  # right on two of the five held inputs, wrong elsewhere
    lookup = f"def f(x): return {known!r}.get(x, 10**9)"
    verdict = env.verify(problem, _answer(lookup))
    assert (verdict.reward, verdict.correct, verdict.info["passed"]) == (pytest.approx(2 / 5), False, 2)
    assert strict.verify(problem, _answer(lookup)).reward == 0.0
    assert strict.verify(problem, _answer(env.solve(problem))).reward == 1.0
    shown = {int(x): int(y) for x, y in re.findall(r"f\((-?\d+)\)=(-?\d+)", problem.prompt)}
    memoriser = f"def f(x): return {shown!r}[x]"  # right on every example in the prompt
    assert env.verify(problem, _answer(memoriser)).reward == 0.0  # the shown inputs are never the tests


HOSTILE = {
    "loop in f": "def f(x):\n    while True:\n        pass",
    "loop at import": "while True:\n    pass\ndef f(x): return x",
    "fork bomb": "import os\ndef f(x):\n    while True:\n        os.fork()",
    "huge output": "def f(x):\n    print('x' * 10**8)\n    return x",
    "memory bomb": "def f(x): return len('x' * 10**11)",
    "equals everything": (
        "class Any:\n    def __eq__(self, other): return True\n    def __repr__(self): return 'Any'\n"
        "def f(x): return Any()"
    ),
    "exits cleanly first": "import os\nos._exit(0)\ndef f(x): return x",
}


def test_hostile_completions_score_zero_and_never_raise():
    env = make_env("pyfunc")
    problem = env.generate(3, 2)
    verdicts = _verify_all(env, [(problem, code) for code in HOSTILE.values()])
    for name, verdict in zip(HOSTILE, verdicts, strict=True):
        assert (verdict.reward, verdict.correct) == (0.0, False), name
    assert verdicts[0].info["status"] == "timeout"


@pytest.mark.parametrize(
    "completion",
    ["", "no answer", _answer(""), _answer("def f(x) return x"), _answer("g = 3"), _answer("\x00"), None, b"\xff"],
)
def test_unparsable_or_f_less_answers_are_format_failures(completion):
    verdict = make_env("pyfunc").verify(make_env("pyfunc").generate(0, 0), completion)
    assert (verdict.reward, verdict.correct, verdict.format_ok) == (0.0, False, False)


def test_lambda_and_equivalent_programs_are_accepted():
    env = make_env("pyfunc")
    problem = env.generate(4, 1)
    expression = problem.reference.removeprefix("def f(x): return ")
    assert env.verify(problem, _answer(f"f = lambda x: {expression}")).correct
    assert env.verify(problem, f"<think>linear</think>\\boxed{{def f(x): return 0+({expression})}}").correct


def _generate(cases: list[tuple[int, int]]) -> list[dict]:
    return [make_env("pyfunc").generate(seed, d).to_dict() for seed, d in cases]


def test_same_problem_in_another_process_and_past_the_top_difficulty():
    cases = [(seed, d) for seed in range(3) for d in (0, 4, 8, 60)]
    with ProcessPool(1, timeout_s=120) as pool:
        result = pool.call(_generate, cases)
    assert result.ok, result.error
    assert result.value == _generate(cases)
    problem = make_env("pyfunc").generate(2, 60)
    assert problem.difficulty == 60 and len(problem.params["ops"]) == 5


def test_prompts_and_answers_fit_the_tiny_model():
    env, tokenizer = make_env("pyfunc"), build_char_tokenizer()
    longest = 0
    for d in DIFFICULTIES:
        for seed in range(30):
            problem = env.generate(seed, d)
            answer = _answer(problem.reference)
            messages = [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": answer}]
            longest = max(longest, len(tokenizer.apply_chat_template(messages, tokenize=False)))
    assert longest <= 256
    assert all(len(env.generate(s, 0).prompt) < 100 for s in range(20))


def test_hostile_code_in_the_env_pool_is_not_an_env_failure():
    """Through the pool, as RL runs it: a hanging candidate costs its own reward, never the env."""
    problem = make_env("pyfunc").generate(5, 2)
    hang = _answer(HOSTILE["loop in f"])
    with EnvPool(EnvsConfig(names=["pyfunc"], workers=2, quarantine_after=1), warm=["pyfunc"]) as pool:
        verdicts = pool.verify_many([(problem, _answer(problem.reference)), (problem, hang), (problem, hang)])
        assert [v.reward for v in verdicts] == [1.0, 0.0, 0.0]
        assert "error" not in verdicts[1].info
        assert not pool.quarantined
