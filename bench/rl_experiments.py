r"""Does RL teach the tiny model anything beyond a sharper output distribution? The experiments behind the
RL stages' defaults and docs/rl.md's "What RL does to zaya-tiny", run through the CLI as a user would.

    .venv/bin/python bench/rl_experiments.py control --env add --seeds 0 1 2
    .venv/bin/python bench/rl_experiments.py curriculum --env add --seeds 0 1 2 --eval-difficulty 2
    .venv/bin/python bench/rl_experiments.py screen --env add --seed 0 \
        --arm 'body=rl.param_groups=[]' --arm 'norm=rl.param_groups=[{match: "^model\.norm\.weight$", lr: 0.05}]'
    .venv/bin/python bench/rl_experiments.py screen --stage rlhf --model runs/mathcode_phase2/final \
        --eval-set data:instructions --set run.root=runs --arm 'lr1e-4=rl.lr=1e-4'   # make demo's rm, any stage

Every arm is `posttrain run stage=<--stage>` (rlve by default) from the same start model: --model, or an SFT
model per seed on --env (built once, under --root; or one SFT model for every seed with --sft-seed), scored by
the stage's own before/after report: pass@1 over a temperature sweep, so "gain" is the trained model at its
best temperature against the SFT model at *its* best temperature, on held-out prompts.
* control: RL against the same run with its rewards shuffled across the batch (rl.reward_control=shuffle);
* curriculum: the RLVE curriculum against a fixed difficulty at equal steps, scored above SFT's difficulties;
* screen: any arms, given as `name=key=value[;key=value...]`.
Means over seeds carry a 95% t-interval. Results go to <root>/<experiment>.json and a printed table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def posttrain(*args: str) -> None:
    command = [sys.executable, "-m", "posttrain.cli", "run", *args, "logging.progress=off"]
    print("$ posttrain run " + " ".join(args), flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed:\n{done.stderr[-3000:]}")


def sft(root: Path, seed: int, tasks: list[str], extra: list[str]) -> Path:
    """The SFT model every arm of this seed starts from (built once)."""
    run = root / f"sft-{'-'.join(tasks)}-seed{seed}"
    if not (run / "final" / "config.json").is_file():
        posttrain("stage=sft", f"run.dir={run}", f"seed={seed}", f"data.tasks=[{','.join(tasks)}]", *extra)
    return run / "final"


def arm(args: argparse.Namespace, name: str, model: Path, seed: int, overrides: list[str], tag: str = "") -> dict:
    """One RL run (reused when its summary exists: the same name, set, seed and tag mean the same run)."""
    run = args.root / f"{name}-{args.eval_set.replace(':', '_')}-seed{seed}{tag}"
    if not (run / "summary.json").is_file():
        posttrain(
            f"stage={args.stage}", f"model.path={model}", f"run.dir={run}", f"seed={seed}", "run.overwrite=true",
            *([f"envs.names=[{args.env}]"] if args.env else []), *overrides,
        )  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    key = args.eval_set
    row = summary["comparison"][key]
    return {
        "gain": row["gain_over_best_baseline"],
        "before_best": row["best_before"]["pass@1"],
        "after_best": row["best_after"]["pass@1"],
        "before_T1": row["train_temperature"]["before"],
        "after_T1": row["train_temperature"]["after"],
        "before_greedy": summary["before"][key]["greedy"]["pass@1"],
        "after_greedy": summary["after"][key]["greedy"]["pass@1"],
        "best_after_T": row["best_after"]["temperature"],
    }


def interval(values: list[float]) -> str:
    """Percentage points: the mean over seeds ± its 95% t-interval."""
    from posttrain.evaluation import mean_interval

    mean, half = mean_interval(values)
    return f"{100 * mean:+.1f}" if len(values) < 2 else f"{100 * mean:+.1f} ± {100 * half:.1f}"


def report(results: dict[str, list[dict]], title: str) -> None:
    print(f"\n{title} (points of held-out pass@1; mean ± 95% CI over seeds)")
    keys = ["gain", "before_best", "after_best", "before_T1", "after_T1", "before_greedy", "after_greedy"]
    print(f"{'arm':<12}" + "".join(f"{k:>18}" for k in keys))
    for name, rows in results.items():
        print(f"{name:<12}" + "".join(f"{interval([r[k] for r in rows]):>18}" for k in keys))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=["control", "curriculum", "screen"])
    parser.add_argument("--stage", default="rlve", help="the RL stage every arm runs")
    parser.add_argument("--env", default=None, help="train on this env (envs.names) and SFT on it")
    parser.add_argument("--model", type=Path, default=None, help="start every arm here instead of an SFT model")
    parser.add_argument("--eval-set", default=None, help="the report's set the table reads (default: --env)")
    parser.add_argument("--sft-tasks", nargs="+", default=None, help="SFT data.tasks (default: the env)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sft-seed", type=int, default=None, help="one SFT model (this seed) for every RL seed")
    parser.add_argument("--root", type=Path, default=Path("runs/experiments"))
    parser.add_argument("--eval-difficulty", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="key=value for every arm")
    parser.add_argument("--sft-set", action="append", default=[], help="key=value for the SFT runs")
    parser.add_argument("--arm", action="append", default=[], help="screen: name=key=value[;key=value...]")
    args = parser.parse_args()
    args.eval_set = args.eval_set or args.env
    if args.eval_set is None or (args.model is None and args.env is None):
        parser.error("give --env (an SFT model per seed is trained on it), or --model and --eval-set")
    common = list(args.set) + ([f"eval.difficulty={args.eval_difficulty}"] if args.eval_difficulty is not None else [])
    arms = {
        "control": {"rl": [], "shuffled": ["rl.reward_control=shuffle"]},
        "curriculum": {  # "rl" is the default curriculum: the control arm, run apart per eval difficulty
            "rl": [],
            "fixed": ["curriculum.kind=fixed", "curriculum.fixed_difficulty=1"],
        },
        "screen": {a.split("=", 1)[0]: a.split("=", 1)[1].split(";") for a in args.arm},
    }[args.experiment]
    results: dict[str, list[dict]] = {name: [] for name in arms}
    for seed in args.seeds:
        sft_seed = seed if args.sft_seed is None else args.sft_seed
        model = args.model or sft(args.root, sft_seed, args.sft_tasks or [args.env], args.sft_set)
        for name, overrides in arms.items():
            tag = f"-d{args.eval_difficulty}" if args.eval_difficulty is not None else ""
            results[name].append(arm(args, name, model, seed, [*common, *overrides], tag))
    out = args.root / f"{args.experiment}-{args.eval_set.replace(':', '_')}.json"
    out.write_text(json.dumps({"seeds": args.seeds, "arms": arms, "results": results}, indent=2) + "\n")
    report(results, f"{args.experiment} on {args.eval_set} (stage={args.stage}), seeds {args.seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
