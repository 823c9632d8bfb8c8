"""Sweep every rlve-gym and reasoning-gym env: does it generate, and does its own reference pass?

Writes `envs/adapters/broken_upstream.json` (name -> reason), which `list_envs` reports and the `rlve`/`rg`
shorthands in `envs.names` exclude, and prints a summary. Runs through `EnvPool`, so hangs are killed.

    .venv/bin/python bench/envs_sweep.py [--source rlve|rg] [--seeds 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from posttrain.envs.adapters.common import BROKEN_FILE
from posttrain.envs.config import EnvsConfig
from posttrain.envs.isolation import EnvPool
from posttrain.envs.registry import list_envs


def sweep(source: str, seeds: int, workers: int, timeout_s: float) -> dict[str, str]:
    names = [spec.name for spec in list_envs(source)]
    config = EnvsConfig(
        workers=workers, generate_timeout_s=timeout_s, verify_timeout_s=timeout_s, quarantine_after=10**9
    )
    broken: dict[str, str] = {}
    outcome: Counter[str] = Counter()
    start = time.time()
    with EnvPool(config, warm=names[:1]) as pool:
        problems = pool.generate_many([(name, seed, 0) for name in names for seed in range(seeds)])
        checkable = [p for p in problems if p is not None and p.reference is not None]
        verdicts = pool.verify_many([(p, f"<answer>{p.reference}</answer>") for p in checkable])
        failed_refs = {p.env: v for p, v in zip(checkable, verdicts, strict=True) if not v.correct}
        for name in names:
            upstream = name.split(":", 1)[1]
            mine = [p for p in problems if p is not None and p.env == name]
            if len(mine) < seeds:
                error = pool.last_error.get(name, "?").splitlines()[0]
                broken[upstream] = f"generation fails at difficulty 0: {error[:200]}"
                outcome["generation fails"] += 1
            elif name in failed_refs:
                info = failed_refs[name].info
                broken[upstream] = f"reference answer fails its own verifier: {json.dumps(info)[:200]}"
                outcome["reference fails"] += 1
            elif all(p.reference is None for p in mine):
                outcome["ok, no reference answer"] += 1
            else:
                outcome["ok, reference verifies"] += 1
    print(f"{source}: {len(names)} envs in {time.time() - start:.0f}s: {dict(outcome)}")
    return broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["rlve", "rg"], action="append")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    current = json.loads(BROKEN_FILE.read_text()) if BROKEN_FILE.is_file() else {}
    for source in args.source or ["rlve", "rg"]:
        current[source] = dict(sorted(sweep(source, args.seeds, args.workers, args.timeout).items()))
        BROKEN_FILE.write_text(json.dumps(current, indent=1) + "\n")
        print(f"{len(current[source])} broken {source} envs written to {BROKEN_FILE}")


if __name__ == "__main__":
    main()
