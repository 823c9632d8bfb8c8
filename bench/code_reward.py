"""Code reward throughput: sandboxed programs per second through the bounded sandbox pool.

    .venv/bin/python bench/code_reward.py --runs 3 --workers 2

Mixes of completions scored by the `code` reward (fenced programs, assert-style or stdin/stdout tests),
the `pyfunc` env's verifier through an `EnvPool` (5 sandboxed test processes per answer), and HumanEval
pass@1 of the 164 canonical solutions through `posttrain.code_eval`. Each figure is the median of `--runs`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from posttrain.code_eval import evaluate_humaneval
from posttrain.envs import EnvPool, EnvsConfig, make_env
from posttrain.rewards import make_reward
from posttrain.rewards.sandbox import isolation_level, load_humaneval, set_max_parallel

HOSTILE = [
    "def f(x):\n    while True:\n        pass",
    "import os\nwhile True:\n    os.fork()",
    "while True:\n    print('x' * 1000)",
    "x = 'x' * 10**11",
]


def _fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def _assert_mix(count: int, wrong_every: int, hostile_every: int) -> tuple[list[str], list[str]]:
    """(completions, tests): f(x) = x + i with three asserts; every `wrong_every`-th is off by one and every
    `hostile_every`-th is one of HOSTILE (0: none)."""
    completions, tests = [], []
    for i in range(count):
        if hostile_every and i % hostile_every == 0:
            code = HOSTILE[(i // hostile_every) % len(HOSTILE)]
        else:
            code = f"def f(x):\n    return x + {i + (1 if wrong_every and i % wrong_every == 0 else 0)}"
        completions.append(_fenced(code))
        tests.append("\n".join(f"assert f({x}) == {x + i}" for x in (1, 2, 3)))
    return completions, tests


def _stdio_mix(count: int) -> tuple[list[str], list[list[dict[str, str]]]]:
    """Half right, half wrong stdin/stdout programs with three cases each (three processes per program)."""
    right, wrong = "print(sum(map(int, input().split())))", "print(0)"
    completions = [_fenced(right if i % 2 else wrong) for i in range(count)]
    cases = [{"input": f"{a} {a + 1}", "output": str(2 * a + 1)} for a in (1, 2, 3)]
    return completions, [cases] * count


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--programs", type=int, default=32)
    parser.add_argument("--skip-humaneval", action="store_true")
    args = parser.parse_args()
    set_max_parallel(args.workers)
    reward = make_reward("code", timeout_s=1.0)
    n = args.programs

    rows: dict[str, float] = {}
    mixes = {
        "assert, all pass": _assert_mix(n, 0, 0),
        "assert, 1/2 fail": _assert_mix(n, 2, 0),
        "assert, 1/8 hostile (loop, fork bomb, flood, memory)": _assert_mix(n, 0, 8),
        "stdin/stdout (3 cases), 1/2 fail": _stdio_mix(n),
    }
    for name, (completions, tests) in mixes.items():
        seconds = _median_seconds(lambda c=completions, t=tests: reward(["p"] * len(c), c, tests=t), args.runs)
        rows[f"code reward: {name} (programs/s)"] = len(completions) / seconds

    env = make_env("pyfunc")
    problems = [env.generate(seed, seed % 9) for seed in range(n)]
    answers = [
        (p, f"<answer>{env.solve(p) if i % 2 else 'def f(x): return 0'}</answer>") for i, p in enumerate(problems)
    ]
    with EnvPool(EnvsConfig(names=["pyfunc"], workers=args.workers), warm=["pyfunc"]) as pool:
        seconds = _median_seconds(lambda: pool.verify_many(answers), args.runs)
    rows["pyfunc verify through EnvPool, 1/2 right (answers/s)"] = len(answers) / seconds

    if not args.skip_humaneval:
        canonical = {p.prompt: p.solution[len(p.prompt) :] for p in load_humaneval()}
        results = []

        def sweep() -> None:
            results.append(evaluate_humaneval(lambda prompts, k: [[canonical[q]] * k for q in prompts]))

        rows["HumanEval 164 canonical, pass@1 sweep (s)"] = _median_seconds(sweep, args.runs)
        rows["HumanEval 164 canonical, pass@1"] = results[-1].pass_at[1]

    print(f"isolation: {isolation_level()}, concurrent sandboxes: {args.workers}, median of {args.runs} runs\n")
    print("| metric | value |\n|---|---:|")
    for name, value in rows.items():
        print(f"| {name} | {value:.2f} |")
    print(json.dumps({"isolation": isolation_level(), "workers": args.workers, **rows}))


if __name__ == "__main__":
    main()
