"""Code prompt rows (HumanEval, stdin/stdout JSONL) carry what `CodeReward` needs, end to end in the sandbox."""

from __future__ import annotations

import json

import pytest

from posttrain.data.code_problems import load_code_rows
from posttrain.errors import UserError
from posttrain.rewards import make_reward


def _columns(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in ("tests", "prefix")}


def _fenced(code: str) -> str:
    return f"<think>plan</think>\n```python\n{code}\n```"


def test_humaneval_rows_score_through_the_code_reward():
    rows = load_code_rows("humaneval")
    assert len(rows) == 164
    picked = [rows[0], rows[40], rows[163]]
    for row in picked:
        assert row["prefix"] in row["prompt"] and "```python" in row["prompt"]
        assert row["tests"].rstrip().endswith(f"check({row['entry_point']})")
    reward = make_reward("code", prefix_column="prefix")
    right = [_fenced(row["solution"][len(row["prefix"]) :]) for row in picked]  # the body, continuing the stub
    whole = [_fenced(row["solution"]) for row in picked]  # the whole function, redefining the stub
    wrong = [_fenced(f"def {row['entry_point']}(*args):\n    return None") for row in picked]
    out = reward(
        [r["prompt"] for r in picked] * 3, right + whole + wrong, **{k: v * 3 for k, v in _columns(picked).items()}
    )
    assert out.scores == [1.0] * 6 + [0.0] * 3


@pytest.fixture
def stdio_file(tmp_path):
    rows = [
        {
            "task_id": "sum",
            "prompt": "Add two integers.",
            "tests": [{"input": "1 2", "output": "3"}, {"input": "4 5", "output": "9"}],
        },
        {
            "task_id": "upper",
            "question": "Upper-case a line.",
            "tests": json.dumps({"inputs": ["ab"], "outputs": ["AB"]}),
        },
    ]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_stdin_rows_score_the_pass_fraction(stdio_file):
    rows = load_code_rows(str(stdio_file))
    assert [r["task_id"] for r in rows] == ["sum", "upper"] and {r["prefix"] for r in rows} == {""}
    assert rows[1]["tests"] == [{"input": "ab", "output": "AB"}]
    assert rows[0]["prompt"].startswith("Add two integers.") and "standard input" in rows[0]["prompt"]
    reward = make_reward("code", prefix_column="prefix")
    completions = [
        _fenced("print(sum(map(int, input().split())))"),
        _fenced("print(3)"),
        _fenced("print(input().upper())"),
    ]
    columns = _columns([rows[0], rows[0], rows[1]])
    assert reward(["p"] * 3, completions, **columns).scores == [1.0, 0.5, 1.0]
    strict = make_reward("code", prefix_column="prefix", all_or_nothing=True)
    assert strict(["p"] * 3, completions, **columns).scores == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no problems"),
        ('{"task_id": "x", "prompt": "p"}\n', "problems.jsonl:1: not a HumanEval or stdin/stdout record"),
        ('{"task_id": "x", "prompt": "p", "tests": []}\n', "problem 'x' has no tests"),
        ("not json\n", "problems.jsonl:1"),
    ],
)
def test_bad_datasets_are_user_errors(tmp_path, content, message):
    path = tmp_path / "problems.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_code_rows(str(path))
    with pytest.raises(UserError, match="does not exist"):
        load_code_rows(str(tmp_path / "missing.jsonl"))
