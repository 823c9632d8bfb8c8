"""Reward throughput on this machine: math pairs/s, sandbox executions/s, HumanEval sweep time.

    .venv/bin/python bench/rewards.py --repeats 3 --workers 2

Each figure is the median of `--repeats` runs, with `--workers` grading processes / concurrent sandboxes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

from posttrain.procpool import ProcessPool
from posttrain.rewards.math_grading import _quiet_math_verify, grade_pairs
from posttrain.rewards.sandbox import isolation_level, load_humaneval, run_code_many, set_max_parallel


def _math_table() -> list[tuple[str, str]]:
    path = Path(__file__).resolve().parent.parent / "tests" / "rewards" / "test_math.py"
    spec = importlib.util.spec_from_file_location("math_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EQUAL + module.DIFFERENT


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sandbox-runs", type=int, default=64)
    args = parser.parse_args()
    set_max_parallel(args.workers)

    pairs = _math_table() * 4
    with ProcessPool(args.workers, initializer=_quiet_math_verify) as pool:
        grade_pairs(pairs[:8], pool=pool)  # warm the workers' imports
        math_s = _median_seconds(lambda: grade_pairs(pairs, pool=pool, timeout_s=20), args.repeats)

    jobs = [(f"def f(x):\n    return x + {i}\n", f"assert f(1) == {i + 1}") for i in range(args.sandbox_runs)]
    sandbox_s = _median_seconds(lambda: run_code_many(jobs, timeout_s=10), args.repeats)

    problems = load_humaneval()
    sweep = [(p.solution, p.tests) for p in problems]
    humaneval_s = _median_seconds(lambda: run_code_many(sweep, timeout_s=10), args.repeats)

    rows = {
        "math pairs/s": len(pairs) / math_s,
        "sandbox executions/s": len(jobs) / sandbox_s,
        "HumanEval 164 canonical sweep (s)": humaneval_s,
    }
    print(f"isolation: {isolation_level()}, workers: {args.workers}, repeats: {args.repeats} (median)\n")
    print("| metric | value |\n|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.1f} |")
    print(json.dumps({"isolation": isolation_level(), "workers": args.workers, **rows}))


if __name__ == "__main__":
    main()
