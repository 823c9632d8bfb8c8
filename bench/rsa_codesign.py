"""Does training a model to aggregate make Markovian RSA pay? ZAYA1's co-design claim, in miniature.

    .venv/bin/python bench/rsa_codesign.py --env sort --seeds 0 1 2
    .venv/bin/python bench/rsa_codesign.py --env add --seeds 0 --fraction 0.2 --problems 50   # a quick look

Per seed, two SFT models at equal steps and equal settings, one with `data.aggregation_fraction` (arm `agg`)
and one without (`plain`), both through `posttrain run stage=sft` (built once under --root). Each model then
answers the same held-out prompts (never trained on) five ways, all through `run_markovian_rsa`:

* greedy;
* K single samples at T = 1, and at the RSA final round's T = 0.6 / top-p 0.95, scored as pass@1 (the mean
  over samples) and as a majority vote over the first K (K = N·(T+1), the samples one RSA run draws);
* Markovian RSA with T = 1 and T = 2 aggregation rounds (N chains, C tails), scored as pass@1 of its
  final-round candidates and as their majority vote.

Generated tokens per problem are counted for every method (all rounds for RSA), so RSA is compared with
single sampling at equal tokens: majority@K drew the same number of samples, of about the same length.
Means over seeds carry a 95% t-interval; per-seed rows and tokens go to <root>/codesign-<env>.json, and each
model's evaluation is kept next to it (codesign-eval.json), so seeds may run as separate processes
(`--seeds 1`, `--seeds 2`) and a last run with every seed only prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def sft(root: Path, arm: str, seed: int, env: str, extra: list[str]) -> Path:
    """The arm's SFT model for this seed, trained once."""
    from rl_experiments import posttrain  # a sibling in bench/: the CLI as a user runs it

    run = root / f"sft-{arm}-{env}-seed{seed}"
    if not (run / "final" / "config.json").is_file():
        posttrain("stage=sft", f"run.dir={run}", f"seed={seed}", f"data.tasks=[{env}]", "run.overwrite=true", *extra)
    return run / "final"


def evaluate(model: Path, args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:
    """{method: {"pass@1", "majority", "tokens"}} on the held-out prompts; every method runs through RSA."""
    from posttrain.data.from_envs import heldout_problems
    from posttrain.envs import EnvPool, EnvsConfig
    from posttrain.rollout.config import RSAConfig
    from posttrain.rollout.markovian_rsa import run_markovian_rsa
    from posttrain.rollout.types import SamplingParams
    from posttrain.rollout.worker import RolloutWorker

    worker = RolloutWorker("codesign", str(model), seed=seed, device="cpu")
    tokenizer = worker.engine.tokenizer
    sampling = SamplingParams(max_new_tokens=args.beta, temperature=1.0)
    budget = {"beta": args.beta, "tau": args.beta}  # answers are short: tails carry whole traces
    widest = args.N * (max(args.rounds) + 1)
    methods = {
        "greedy": RSAConfig(N=1, C=1, T=0, final_temperature=0.0, final_top_p=1.0, **budget),
        "single T=1": RSAConfig(N=widest, C=1, T=0, final_temperature=1.0, final_top_p=1.0, **budget),
        "single T=0.6": RSAConfig(N=widest, C=1, T=0, **budget),  # the final round's sampling
        **{f"rsa T={t}": RSAConfig(N=args.N, C=args.C, T=t, **budget) for t in args.rounds},
    }
    results: dict[str, dict[str, float]] = {}
    with EnvPool(EnvsConfig([args.env], workers=1)) as pool:
        problems = [p for p, _ in heldout_problems(args.env, args.difficulty, args.problems, seed, pool)]
        for name, cfg in methods.items():
            prompts = [p.prompt for p in problems]
            trees = run_markovian_rsa(prompts, worker.generate, tokenizer, cfg, sampling, seed=seed)
            tokens = statistics.mean(
                sum(len(c.rollout.completion_ids) for round_ in tree.rounds for c in round_) for tree in trees
            )
            samples = [(p, c.rollout.text) for p, tree in zip(problems, trees, strict=True) for c in tree.final]
            correct = [v.correct for v in pool.verify_many(samples)]
            row = {"pass@1": statistics.mean(correct), "tokens": tokens}
            if name.startswith("single"):  # majority over as many samples as each RSA run draws
                for t in args.rounds:
                    k = args.N * (t + 1)
                    row[f"majority@{k}"] = _majority_accuracy(problems, [tree.final[:k] for tree in trees], pool)
                    row[f"tokens@{k}"] = statistics.mean(
                        sum(len(c.rollout.completion_ids) for c in tree.final[:k]) for tree in trees
                    )
            elif name.startswith("rsa"):
                row["majority"] = _majority_accuracy(problems, [tree.final for tree in trees], pool)
            results[name] = row
            print(f"  {name:<14} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return results


def cached_evaluation(model: Path, args: argparse.Namespace, seed: int) -> dict[str, dict[str, float]]:
    """`evaluate`, kept next to the model under the settings that produced it, so seeds can run as separate
    processes and a last run with every seed only prints the table."""
    keys = ("env", "N", "C", "rounds", "beta", "difficulty", "problems")
    settings = {key: getattr(args, key) for key in keys} | {"seed": seed}
    path = model.parent / "codesign-eval.json"
    if path.is_file() and (saved := json.loads(path.read_text()))["settings"] == settings:
        return saved["results"]
    results = evaluate(model, args, seed)
    path.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    return results


def _majority_accuracy(problems, finals, pool) -> float:
    from posttrain.rollout.markovian_rsa import RSATree

    votes = []
    for problem, final in zip(problems, finals, strict=True):
        tree = RSATree(problem.prompt, [final])
        votes.append((problem, "" if tree.majority is None else f"<answer>{tree.majority}</answer>"))
    return statistics.mean(v.correct for v in pool.verify_many(votes))


def interval(values: list[float]) -> str:
    """Percentage points: the mean over seeds ± its 95% t-interval."""
    from posttrain.evaluation import mean_interval

    mean, half = mean_interval(values)
    return f"{100 * mean:.1f}" if len(values) < 2 else f"{100 * mean:.1f} ± {100 * half:.1f}"


def report(results: dict[str, list[dict]], rounds: list[int], n: int) -> None:
    print("\nheld-out accuracy, % (mean ± 95% CI over seeds); tokens: generated per problem")
    for arm, per_seed in results.items():
        print(f"\n{arm}")
        for method in per_seed[0]:
            rows = [seed[method] for seed in per_seed]
            cells = [f"pass@1 {interval([r['pass@1'] for r in rows])}"]
            if "majority" in rows[0]:
                cells.append(f"majority {interval([r['majority'] for r in rows])}")
            for t in rounds:
                if f"majority@{n * (t + 1)}" in rows[0]:
                    cells.append(f"maj@{n * (t + 1)} {interval([r[f'majority@{n * (t + 1)}'] for r in rows])}")
            cells.append(f"tokens {statistics.mean(r['tokens'] for r in rows):.0f}")
            print(f"  {method:<14}" + "   ".join(cells))
        for t in rounds:  # RSA's vote against the best single-sample vote over as many samples
            k = n * (t + 1)
            gaps = [
                seed[f"rsa T={t}"]["majority"] - max(seed[m][f"majority@{k}"] for m in ("single T=1", "single T=0.6"))
                for seed in per_seed
            ]
            print(f"  RSA T={t} majority minus best single majority@{k}: {interval(gaps)} points")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="sort")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.2, help="data.aggregation_fraction of the agg arm")
    parser.add_argument("--N", type=int, default=8)
    parser.add_argument("--C", type=int, default=4, help="tails per aggregation prompt, in SFT and at inference")
    parser.add_argument("--rounds", nargs="+", type=int, default=[1, 2], help="RSA aggregation rounds T")
    parser.add_argument("--beta", type=int, default=24, help="new tokens per call")
    parser.add_argument("--difficulty", type=int, default=1, help="held-out prompts' difficulty")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--root", type=Path, default=Path("runs/experiments/codesign"))
    parser.add_argument("--sft-set", action="append", default=[], help="key=value for both arms' SFT")
    args = parser.parse_args()
    shared = ["data.max_seq_len=512", f"rsa.C={args.C}", *args.sft_set]  # equal settings, equal steps
    arms = {"plain": shared, "agg": [*shared, f"data.aggregation_fraction={args.fraction}"]}
    results: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, extra in arms.items():
            model = sft(args.root, arm, seed, args.env, extra)
            print(f"{arm}, seed {seed}: {model}", flush=True)
            results[arm].append(cached_evaluation(model, args, seed))
    out = args.root / f"codesign-{args.env}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    report(results, args.rounds, args.N)
    return 0


if __name__ == "__main__":
    sys.exit(main())
