"""pass@k: the unbiased estimator against a hand-worked table and brute force, and HumanEval end to end."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import pytest

from posttrain.code_eval import evaluate_code, evaluate_humaneval, pass_at_k
from posttrain.errors import UserError
from posttrain.rewards.sandbox import load_code_jsonl, load_humaneval

# (n, c, k, pass@k) worked by hand from 1 - C(n-c, k) / C(n, k)
TABLE = [
    (1, 1, 1, Fraction(1)),
    (5, 2, 1, Fraction(2, 5)),
    (5, 2, 2, 1 - Fraction(3, 10)),  # C(3,2)=3, C(5,2)=10
    (5, 2, 3, 1 - Fraction(1, 10)),  # C(3,3)=1, C(5,3)=10
    (5, 2, 4, Fraction(1)),  # only 3 wrong samples: any 4 hold a right one
    (4, 1, 2, Fraction(1, 2)),  # C(3,2)=3, C(4,2)=6
    (10, 3, 3, 1 - Fraction(35, 120)),  # C(7,3)=35, C(10,3)=120
    (10, 0, 5, Fraction(0)),
    (10, 10, 1, Fraction(1)),
    (200, 1, 100, Fraction(1, 2)),  # C(199,100)/C(200,100) = 100/200
]
BROKEN = "    return None\n"


@pytest.mark.parametrize(("n", "c", "k", "expected"), TABLE)
def test_pass_at_k_table(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(float(expected), abs=1e-12)


def test_pass_at_k_matches_brute_force_over_every_draw():
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                draws = list(itertools.combinations(samples, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(any(d) for d in draws) / len(draws), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 0), (5, 2, 6), (5, 6, 1), (5, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


@pytest.fixture(scope="module")
def humaneval():
    problems = load_humaneval()
    assert len(problems) == 164
    return problems


def _model(answers):
    """A `generate` stand-in that answers each prompt with the given completions."""

    def generate(prompts, n):
        return [list(answers[prompt]) for prompt in prompts]

    return generate


def _canonical(problem) -> str:
    return problem.solution[len(problem.prompt) :]


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(humaneval):
    subset = humaneval[::14]  # 12 problems spread over the set; bench/code_reward.py runs all 164
    limit = {p.task_id for p in subset}
    generate_canonical = _model({p.prompt: [_canonical(p)] for p in humaneval})
    right = evaluate_code(subset, generate_canonical, n=1, ks=(1,))
    assert right.pass_at == {1: 1.0} and set(right.correct) == limit
    broken = evaluate_code(subset, _model({p.prompt: [BROKEN] for p in subset}), n=1, ks=(1,))
    assert broken.pass_at == {1: 0.0} and broken.statuses == {"fail": len(subset)}
    first = evaluate_humaneval(generate_canonical, limit=3)
    assert first.pass_at == {1: 1.0} and list(first.correct) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]


def test_mixed_samples_give_the_exact_counts_and_pass_at_k(humaneval):
    subset = humaneval[5:10]
    counts = {p.task_id: i for i, p in enumerate(subset)}  # 0..4 right samples out of n = 4
    answers = {p.prompt: [_canonical(p)] * min(i, 4) + [BROKEN] * (4 - min(i, 4)) for i, p in enumerate(subset)}
    result = evaluate_code(subset, _model(answers), n=4, ks=(1, 2, 4))
    assert result.correct == counts
    hand = {0: (0, 0, 0), 1: (1 / 4, 1 / 2, 1), 2: (2 / 4, 5 / 6, 1), 3: (3 / 4, 1, 1), 4: (1, 1, 1)}  # n=4, k=1,2,4
    for position, k in enumerate((1, 2, 4)):
        assert result.pass_at[k] == pytest.approx(sum(hand[c][position] for c in counts.values()) / 5)


def test_fenced_functions_and_raw_continuations_both_count(humaneval):
    problem = humaneval[0]
    fenced = f"<think>use the stub</think>Here:\n```python\n{problem.solution}\n```"
    continued = _canonical(problem) + "\n\ndef check(candidate):\n    assert False\n"  # cut at the stop sequence
    body_only = f"```python\n{_canonical(problem)}```"
    result = evaluate_code([problem], _model({problem.prompt: [fenced, continued, body_only]}), n=3, ks=(1,))
    assert result.correct == {problem.task_id: 3}


@pytest.fixture
def stdio_problems(tmp_path):
    rows = [
        {
            "task_id": "sum",
            "prompt": "Print the sum of two integers.",
            "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "-5 5\n", "output": "0\n"}],
        },
        {
            "task_id": "rev",
            "question": "Print the line reversed.",
            "input_output": json.dumps({"inputs": ["abc\n", "xy\n"], "outputs": ["cba\n", "yx\n"]}),
        },
    ]
    path = tmp_path / "stdio.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return load_code_jsonl(path)


def test_stdin_stdout_problems_and_hostile_samples(stdio_problems):
    answers = {
        "Print the sum of two integers.": [
            "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
            "print(sum(map(int, input().split())))",  # no fence: the text itself is the program
            "```python\nprint(0)\n```",
            "```python\nwhile True:\n    pass\n```",
        ],
        "Print the line reversed.": ["```python\nprint(input()[::-1])\n```", "", b"\xff\xfe", None],
    }
    result = evaluate_code(stdio_problems, _model(answers), n=4, ks=(1, 4), timeout_s=1.0)
    assert result.correct == {"sum": 2, "rev": 1}
    assert result.pass_at == {1: pytest.approx((2 / 4 + 1 / 4) / 2), 4: 1.0}
    assert result.statuses["timeout"] == 1
    assert result.to_dict()["problems"] == 2


def test_bad_requests_fail_before_any_run(stdio_problems):
    generate = _model({p.prompt: ["print(1)"] * 2 for p in stdio_problems})
    with pytest.raises(UserError, match="1 <= k <= n"):
        evaluate_code(stdio_problems, generate, n=2, ks=(1, 5))
    with pytest.raises(UserError, match="at least one problem"):
        evaluate_code([], generate)
    with pytest.raises(ValueError, match="completions for each"):
        evaluate_code(stdio_problems, generate, n=3, ks=(1,))
