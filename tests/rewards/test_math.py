"""Math grading: a labelled table of equivalent and non-equivalent answers, plus the reward over completions."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from posttrain.rewards import grade_pairs, make_reward, math_equal
from tests.conftest import run_python

EQUAL = [
    ("1/2", "0.5"),
    ("\\frac{1}{2}", "\\dfrac{1}{2}"),
    ("\\frac{1}{2}", "2^{-1}"),
    ("0.25", "\\frac14"),
    ("3", "3.0"),
    ("3", "x=3"),
    ("x=3", "3"),
    ("y = 2x + 1", "y=1+2x"),
    ("\\sqrt{2}", "2^{1/2}"),
    ("\\sqrt{8}", "2\\sqrt{2}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("\\pi", "\\pi"),
    ("2\\pi", "\\pi \\cdot 2"),
    ("\\frac{1}{2^{99}}", "2^{-99}"),
    ("123456789012345678901234567890", "123456789012345678901234567890"),
    ("2^{100}", "1267650600228229401496703205376"),
    ("\\frac{1}{2004!}", "\\frac{1}{2004!}"),
    ("10!", "3628800"),
    ("-7", "-7"),
    ("-\\frac{3}{4}", "-0.75"),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("(1, 2)", "(1,2)"),
    ("(1, 2, 3)", "(1,2,3)"),
    ("[0, 1)", "[0,1)"),
    ("(-\\infty, 2]", "(-\\infty,2]"),
    ("[1, 5]", "[1,5]"),
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("\\begin{bmatrix}1\\\\0\\end{bmatrix}", "\\begin{pmatrix}1\\\\0\\end{pmatrix}"),
    ("x^2 + 2x + 1", "(x+1)^2"),
    ("\\frac{x}{2}", "0.5x"),
    ("a+b", "b+a"),
    ("\\boxed{42}", "42"),
    ("42", "\\boxed{42}"),
    ("50\\%", "50"),
    ("\\$5", "5"),
    ("5", "5.000"),
    ("1000000", "1,000,000"),
    ("\\frac{22}{7}", "\\frac{44}{14}"),
    ("0.1", "\\frac{1}{10}"),
    ("3.14", "3.14"),
    ("\\log_2 8", "3"),
    ("e^{0}", "1"),
    ("\\sin(\\pi/2)", "1"),
    ("\\infty", "\\infty"),
    ("\\text{yes}", "yes"),
    ("east", "East"),
    ("2, 3", "3, 2"),
    ("\\frac{5}{3}", "1\\frac{2}{3}"),
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}"),
    ("60^\\circ", "60"),
    ("0", "0"),
    ("-0", "0"),
    ("\\frac{0}{5}", "0"),
    ("100", "10^2"),
]

DIFFERENT = [
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("0.1", "0.1000001"),
    ("0.3333333", "\\frac{1}{3}"),
    ("123456789012345678901", "123456789012345678902"),
    ("2^{100}", "1267650600228229401496703205377"),
    ("10^{20}", "10^{20}+1"),
    ("1/2", "0.5000001"),
    ("\\sqrt{2}", "1.41421356"),
    ("\\pi", "3.14159265"),
    ("3", "4"),
    ("3", "-3"),
    ("x=3", "x=4"),
    ("x=3", "4"),
    ("\\frac{1}{2}", "\\frac{1}{3}"),
    ("\\{1, 2\\}", "\\{1, 3\\}"),
    ("\\{1, 2, 3\\}", "\\{1, 2\\}"),
    ("(1, 2)", "(2, 1)"),
    ("(1, 2, 3)", "(3, 2, 1)"),
    ("[0, 1)", "[0, 1]"),
    ("(0, 1)", "[0, 1]"),
    ("(-\\infty, 2]", "(-\\infty, 2)"),
    ("\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 3\\\\2 & 4\\end{pmatrix}"),
    ("\\begin{pmatrix}1\\\\0\\end{pmatrix}", "\\begin{pmatrix}0\\\\1\\end{pmatrix}"),
    ("x^2 + 2x + 1", "(x-1)^2"),
    ("a+b", "a-b"),
    ("2\\pi", "\\pi"),
    ("\\sqrt{3}", "\\sqrt{2}"),
    ("\\infty", "-\\infty"),
    ("east", "west"),
    ("\\text{yes}", "no"),
    ("1000000", "1000001"),
    ("42", ""),
    ("42", "   "),
    ("", "42"),
    ("42", "forty-two-ish garbage {{{"),
    ("42", "\\boxed{"),
    ("7", "\\frac{"),
    ("5", "None"),
    ("12", "1.2"),
    ("1e-9", "1e-10"),
    ("0.999999", "1"),
    ("-\\frac{3}{4}", "\\frac{3}{4}"),
    ("\\frac{22}{7}", "\\pi"),
    ("100", "10^3"),
    ("2^{64}", "18446744073709551615"),
    ("0", "1"),
    ("\\log_2 8", "\\log_2 9"),
    ("3.14", "3.15"),
    ("1/3", "0.33"),
]


def test_table_is_large_and_labelled_both_ways() -> None:
    assert len(EQUAL) + len(DIFFERENT) >= 100 and len(EQUAL) >= 40 and len(DIFFERENT) >= 40


def test_labelled_pairs() -> None:
    pairs = EQUAL + DIFFERENT
    expected = [True] * len(EQUAL) + [False] * len(DIFFERENT)
    graded = grade_pairs(pairs, timeout_s=20)
    wrong = [(pair, want, got) for pair, want, got in zip(pairs, expected, graded, strict=True) if got is not want]
    assert wrong == []


def test_hard_timeout_instead_of_signals_works_off_the_main_thread() -> None:
    """A pathological tower of powers is cut off by the process-level timeout, from a non-main thread."""
    results: list[object] = []
    thread = threading.Thread(
        target=lambda: results.append(grade_pairs([("1", "2^{2^{2^{2^{30}}}}"), ("1/2", "0.5")], timeout_s=2))
    )
    thread.start()
    thread.join()
    assert results == [[None, True]]


@pytest.mark.parametrize("garbage", ["", "\x00\x01\xff", "\\" * 5000, "{" * 3000, "x" * 100_000, None, b"\xff\xfe"])
def test_garbage_is_false_not_an_exception(garbage: object) -> None:
    assert math_equal("1", garbage) is False  # type: ignore[arg-type]


def test_math_reward_extracts_and_reports() -> None:
    reward = make_reward("math")
    completions = [
        "<think>2+2 is \\boxed{5}?</think> So the answer is \\boxed{4}.",
        "<think>hmm</think><answer>\\frac{8}{2}</answer>",
        "The result.\nAnswer: 4",
        "<think>\\boxed{4}</think> I don't know",
        "",
        "\x00\x00 binary \xff",
    ]
    out = reward([""] * len(completions), completions, answer="4", step=3, max_steps=10)
    assert out.scores == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert out.metrics["math/accuracy"] == pytest.approx(0.5)
    assert out.metrics["math/extracted"] == pytest.approx(0.5)
    per_sample_gold = reward(["", ""], ["\\boxed{3}", "\\boxed{3}"], answer=["3", "4"])
    assert per_sample_gold.scores == [1.0, 0.0]


# A slice of the table: plain equalities and the false positives math-verify alone would accept.
SCRIPT_PAIRS = [*EQUAL[:4], *DIFFERENT[:4], ("1/2", "0.5000001"), ("2^{100}", "1267650600228229401496703205377")]
SCRIPT_LABELS = [True] * 4 + [False] * 6

UNGUARDED = """
import json, threading
from posttrain.rewards import math_equal
pairs = json.loads({pairs!r})
in_main = [math_equal(gold, predicted) for gold, predicted in pairs]
in_threads = [None] * len(pairs)
def grade(i):
    in_threads[i] = math_equal(*pairs[i])
threads = [threading.Thread(target=grade, args=(i,)) for i in range(len(pairs))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps([in_main, in_threads]))
"""

IN_RAY = """
import json, ray
from posttrain.rewards import math_equal
from posttrain.rollout.config import RayConfig
from posttrain.rollout.session import init_ray, shutdown_ray
init_ray(RayConfig(num_cpus=1))
grade = ray.remote(lambda pairs: [math_equal(gold, predicted) for gold, predicted in pairs])
print(json.dumps(ray.get(grade.remote(json.loads({pairs!r})))))
shutdown_ray()
"""


@pytest.mark.parametrize("how", ["script", "-c"])
def test_math_equal_from_an_unguarded_script_and_its_threads(tmp_path: Path, how: str) -> None:
    """A reward script written without `if __name__ == "__main__":` gets correct grades and no tracebacks."""
    done = run_python(UNGUARDED.format(pairs=json.dumps(SCRIPT_PAIRS)), tmp_path, how=how)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert json.loads(done.stdout) == [SCRIPT_LABELS, SCRIPT_LABELS]


def test_math_equal_inside_a_ray_task(tmp_path: Path) -> None:
    done = run_python(IN_RAY.format(pairs=json.dumps(SCRIPT_PAIRS)), tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == SCRIPT_LABELS
