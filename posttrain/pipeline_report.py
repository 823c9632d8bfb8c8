"""The end of `stage=all`: every stage's output scored on every stage's held-out sets, so a regression in an
earlier skill shows up next to the gain a later stage bought.

Each RL stage's sets are rebuilt from its saved config (its envs at eval.difficulty, its datasets' held-out
rows); every model (the pipeline's start, then each stage's final/) answers them greedily, with the token budget of
the stage the set belongs to. The matrix is printed
and written to `<run.root>/pipeline.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def pipeline_report(root: Path, stages: list[str], start: str) -> dict[str, Any]:
    from posttrain.config import load_run_config
    from posttrain.envs import EnvPool
    from posttrain.evaluation import evaluate_sets
    from posttrain.rollout.engine import build_engine
    from posttrain.stagekit import get_stage

    configs = {name: load_run_config(root / name / "config.yaml") for name in stages}
    rl_stages = [name for name in stages if hasattr(get_stage(name), "eval_sets")]
    if not rl_stages:
        return {}
    base = configs[rl_stages[0]]
    models = {"start": start, **{name: str(root / name / "final") for name in stages}}
    owned: list[tuple[Any, list[Any]]] = []  # (a stage's config, its sets): each set is scored as its stage does
    seen: set[str] = set()
    with EnvPool(base.envs) as pool:
        for name in rl_stages:
            kit, cfg = get_stage(name), configs[name]
            mine = [s for s in kit.eval_sets(kit.prepare(cfg), cfg, pool) if s.name not in seen]  # shared: once
            seen.update(s.name for s in mine)
            owned.append((cfg, mine))
        matrix = {}
        for label, path in models.items():
            engine = build_engine("hf", path, seed=base.seed, dtype=base.model.dtype, device=base.device)
            matrix[label] = {}
            for cfg, sets in owned:
                if not sets:
                    continue
                report = evaluate_sets(
                    engine, sets, [0.0], samples=1, k=1, max_new_tokens=cfg.eval.max_new_tokens,
                    batch_size=cfg.eval.batch_size, seed=base.seed,
                )  # fmt: skip
                matrix[label].update({name: row["greedy"]["pass@1"] for name, row in report.items()})
    result = {"models": models, "greedy_pass@1": matrix}
    (root / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(matrix_table(matrix), flush=True)
    return result


def matrix_table(matrix: dict[str, dict[str, float | None]]) -> str:
    """Rows: the start model, then each stage's final/; columns: every stage's held-out set (greedy pass@1)."""
    columns = list(dict.fromkeys(name for row in matrix.values() for name in row))
    width = max([12, *(len(c) + 2 for c in columns)])
    lines = ["held-out greedy pass@1 of every stage's output on every stage's sets",
             f"{'model':<18}" + "".join(f"{c:>{width}}" for c in columns)]  # fmt: skip
    for label, row in matrix.items():
        cells = "".join(f"{'-' if row.get(c) is None else format(row[c], '.1%'):>{width}}" for c in columns)
        lines.append(f"{label:<18}{cells}")
    return "\n".join(lines)
