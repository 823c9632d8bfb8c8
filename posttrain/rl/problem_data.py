"""Prompt datasets for RL: rows read from a file, a saved `datasets` directory or the Hub, checked up front.

Each row keeps every column (answer, tests, constraints, ...) for the scorer. A row whose prompt cannot be
read, or a dataset that lacks the column its scorer needs, is a one-line error before any work.
"""

from __future__ import annotations

from typing import Any

from posttrain.errors import UserError


def dataset_name(spec: Any) -> str:
    """The name a dataset's problems, metrics and eval set go by: `name`, or the file's stem."""
    from pathlib import Path

    return spec.name or Path(spec.path).stem


BUILTIN_ROWS = 2000


def builtin_rows(name: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Rows of a builtin prompt set (`path: builtin:<name>`): `count` to train on and a ninth as many held out."""
    if name == "instructions":
        from posttrain.data.instructions import instruction_prompts

        held = max(count // 9, 1)
        return instruction_prompts(count, seed) + instruction_prompts(held, seed, heldout=True)
    raise UserError(f"problems.datasets: unknown builtin prompt set 'builtin:{name}' (available: builtin:instructions)")


def load_problem_rows(spec: Any, seed: int = 0) -> list[dict[str, Any]]:
    """Every row of `spec.path` (up to `spec.max_rows`), with a readable prompt and the answer column if named;
    `builtin:<name>` generates a builtin prompt set instead (e.g. instruction-following prompts for RLHF)."""
    from posttrain.data.sources import read_records
    from posttrain.rl.sources import prompt_text

    limit = spec.max_rows
    if spec.path.startswith("builtin:"):  # max_rows counts the rows to train on; the held-out ones come on top
        dataset, limit = builtin_rows(spec.path.removeprefix("builtin:"), spec.max_rows or BUILTIN_ROWS, seed), 0
    else:
        dataset = read_records(spec.path, key="problems.datasets.path")
    rows = []
    for index, record in enumerate(dataset):
        if limit and len(rows) >= limit:
            break
        try:
            prompt_text(record)
        except ValueError as exc:
            raise UserError(f"problems.datasets {spec.path!r}, row {index}: {exc}") from None
        if spec.answer_column and spec.answer_column not in record:
            raise UserError(
                f"problems.datasets {spec.path!r} has no column {spec.answer_column!r} (its columns: "
                f"{', '.join(sorted(record))}); set answer_column to the gold-answer column, or null"
            )
        rows.append(dict(record))
    if not rows:
        raise UserError(f"problems.datasets {spec.path!r} holds no rows")
    return rows


def dataset_eval_sets(datasets: dict[str, list[dict[str, Any]]], cfg: Any, scorers: dict[str, Any]) -> list:
    """Each dataset's held-out rows (the tenth no stage trains on), up to eval.num_samples, as an eval set."""
    from posttrain.data.from_envs import is_heldout
    from posttrain.evaluation import EvalSet
    from posttrain.rl.sources import prompt_text, row_problem

    sets = []
    for spec in cfg.problems.datasets:
        name = dataset_name(spec)
        rows = datasets[name]
        held = [i for i, row in enumerate(rows) if is_heldout(prompt_text(row))][: cfg.eval.num_samples]
        problems = [row_problem(name, i, rows[i], spec.answer_column) for i in held]
        if problems:
            sets.append(EvalSet(f"data:{name}", problems, scorers[name], "held-out rows"))
    return sets
