"""`posttrain eval`: accuracy per environment on held-out problems, as JSON.

Problems are drawn from the prompts every training stage skips (`posttrain.data.from_envs.is_heldout`),
answered greedily, and verified by the envs in their isolating process pool.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from posttrain.cli import add_override_command
from posttrain.config import Config, compose, to_object
from posttrain.config.schema import EvalConfig
from posttrain.errors import UserError

EXAMPLES = """\
examples:
  posttrain eval model.path=runs/sft/final envs.names=[add,sort]
  posttrain eval model.path=runs/rlve/final envs.names=[builtin] eval.difficulty=2 eval.num_samples=50
  posttrain eval model.path=zaya-tiny envs.names=[add] output=before.json
  posttrain eval model.path=runs/rlve/final envs.names=[add] eval.temperature=1.0 eval.samples=4
"""


def evaluate_envs(model_path: str, names: Sequence[str], cfg: Config) -> dict:
    """{"model", "difficulty", "temperature", "samples", "envs": {name: {"accuracy", "format_ok", "n"}},
    "mean_accuracy"}.

    Uses `cfg.eval` (difficulty, prompt count, decoding), `cfg.envs` (pool) and `cfg.seed`. With
    eval.temperature > 0, accuracy is pass@1: the mean over eval.samples answers per prompt; n counts
    prompts.
    """
    return evaluate_envs_under(model_path, names, cfg, [cfg.eval])[0]


def evaluate_envs_under(
    model_path: str, names: Sequence[str], cfg: Config, eval_cfgs: Sequence[EvalConfig]
) -> list[dict]:
    """One `evaluate_envs` report per eval config, from one model load and one env pool; configs that
    share a difficulty and prompt count score the same held-out prompts."""
    from posttrain.data.from_envs import heldout_problems
    from posttrain.envs import EnvPool, expand_names, make_env
    from posttrain.evaluation import generate_completions
    from posttrain.models import load_model

    env_names = expand_names(list(names))
    for name in env_names:
        make_env(name)  # unknown names fail before any work
    model, tokenizer = load_model(model_path, seed=cfg.seed)
    reports = []
    with EnvPool(cfg.envs, warm=env_names) as pool:
        heldout: dict[tuple[str, int, int], list] = {}
        for ev in eval_cfgs:
            results = {}
            for name in env_names:
                key = (name, ev.difficulty, ev.num_samples)
                if key not in heldout:
                    heldout[key] = [p for p, _ in heldout_problems(name, ev.difficulty, ev.num_samples, cfg.seed, pool)]
                problems = heldout[key]
                completions = generate_completions(
                    model,
                    tokenizer,
                    [[{"role": "user", "content": p.prompt}] for p in problems],
                    max_new_tokens=ev.max_new_tokens,
                    batch_size=ev.batch_size,
                    temperature=ev.temperature,
                    samples=ev.samples,
                    seed=cfg.seed,
                )
                answered = [p for p in problems for _ in range(ev.samples)]  # completions are prompt-major
                verdicts = pool.verify_many(list(zip(answered, completions, strict=True)))
                graded = len(verdicts)
                results[name] = {
                    "accuracy": sum(v.correct for v in verdicts) / graded if graded else None,
                    "format_ok": sum(v.format_ok for v in verdicts) / graded if graded else None,
                    "n": len(problems),
                }
            scored = [r["accuracy"] for r in results.values() if r["accuracy"] is not None]
            reports.append(
                {
                    "model": model_path,
                    "difficulty": ev.difficulty,
                    "temperature": ev.temperature,
                    "samples": ev.samples,
                    "envs": results,
                    "mean_accuracy": sum(scored) / len(scored) if scored else None,
                }
            )
    return reports


def _handle(args: argparse.Namespace) -> int:
    overrides = [o for o in args.overrides if not o.startswith(("model.path=", "output="))]
    given = dict(o.split("=", 1) for o in args.overrides if o.startswith(("model.path=", "output=")))
    if "model.path" not in given:
        raise UserError("missing model.path=<preset or checkpoint dir>, e.g. posttrain eval model.path=runs/sft/final")
    cfg = to_object(compose("eval", [*overrides, f"model.path={given['model.path']}"], layer_files=[]))
    report = evaluate_envs(given["model.path"], cfg.envs.names, cfg)
    text = json.dumps(report, indent=2)
    if "output" in given:
        Path(given["output"]).write_text(text + "\n")
    print(text)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    add_override_command(
        subparsers,
        "eval",
        _handle,
        help="accuracy per environment on held-out problems, as JSON",
        description=(
            "Accuracy per env on held-out problems: greedy, or pass@1 over sampled answers with eval.temperature > 0."
            " Keys: model.path, envs.names, eval.*, output."
        ),
        epilog=EXAMPLES,
    )
