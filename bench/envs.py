"""Throughput of env generation + verification: problems per second, in process and through `EnvPool`.

Each problem is generated, then its oracle answer is verified (the work one rollout's scoring costs).
Every run uses fresh seeds, so adapter caches never help; the table shows the median of `--runs` runs.

    .venv/bin/python bench/envs.py [--runs 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from posttrain.envs import EnvPool, EnvsConfig, Problem, list_envs, make_env


def workload(source: str, count: int, run: int) -> list[tuple[str, int, int]]:
    """`count` (env, seed, difficulty) requests cycling over the source's non-broken envs."""
    names = [spec.name for spec in list_envs(source) if spec.broken is None]
    stride = max(1, len(names) // 40)  # adapters: a fixed spread of 40 envs
    names = names[::stride]
    difficulties = range(7) if source == "builtin" else range(1)
    return [(names[i % len(names)], 1000 * run + i, difficulties[i % len(difficulties)]) for i in range(count)]


def answer(problem: Problem | None) -> str:
    return f"<answer>{problem.reference if problem is not None else ''}</answer>"


def in_process(requests: list[tuple[str, int, int]]) -> float:
    envs = {name: make_env(name) for name, _, _ in requests}
    start = time.perf_counter()
    for name, seed, difficulty in requests:
        problem = envs[name].generate(seed, difficulty)
        envs[name].verify(problem, answer(problem))
    return len(requests) / (time.perf_counter() - start)


def pooled(pool: EnvPool, requests: list[tuple[str, int, int]]) -> float:
    start = time.perf_counter()
    problems = pool.generate_many(requests)
    pool.verify_many([(p, answer(p)) for p in problems if p is not None])
    return len(requests) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sizes = {"builtin": 2000, "rlve": 200, "rg": 80}
    config = EnvsConfig(workers=args.workers, quarantine_after=10**6)
    rows = []
    with EnvPool(config, warm=[workload(s, 40, 0)[i][0] for s in sizes for i in range(40)]) as pool:
        for source, size in sizes.items():
            local = [in_process(workload(source, size, run + 1)) for run in range(args.runs)]
            remote = [pooled(pool, workload(source, size, run + 100)) for run in range(args.runs)]
            rows.append((source, size, statistics.median(local), statistics.median(remote)))
    print(f"{platform.processor() or platform.machine()}, {args.workers} pool workers, median of {args.runs} runs\n")
    print(f"| source | problems/run | in process (problems/s) | EnvPool, {args.workers} workers (problems/s) |")
    print("|---|---:|---:|---:|")
    for source, size, local, remote in rows:
        print(f"| {source} | {size} | {local:,.0f} | {remote:,.0f} |")


if __name__ == "__main__":
    main()
