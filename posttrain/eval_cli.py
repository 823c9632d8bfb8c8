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
from posttrain.errors import UserError

EXAMPLES = """\
examples:
  posttrain eval model.path=runs/sft/final envs.names=[add,sort]
  posttrain eval model.path=runs/rlve/final envs.names=[builtin] eval.difficulty=2 eval.num_samples=50
  posttrain eval model.path=zaya-tiny envs.names=[add] output=before.json
"""


def evaluate_envs(model_path: str, names: Sequence[str], cfg: Config) -> dict:
    """{"model", "difficulty", "envs": {name: {"accuracy", "format_ok", "n"}}, "mean_accuracy"}.

    Uses `cfg.eval` (difficulty, sample count, generation budget), `cfg.envs` (pool) and `cfg.seed`.
    """
    from posttrain.data.from_envs import heldout_problems
    from posttrain.envs import EnvPool, expand_names, make_env
    from posttrain.evaluation import greedy_completions
    from posttrain.models import load_model

    env_names = expand_names(list(names))
    for name in env_names:
        make_env(name)  # unknown names fail before any work
    model, tokenizer = load_model(model_path, seed=cfg.seed)
    results = {}
    with EnvPool(cfg.envs, warm=env_names) as pool:
        for name in env_names:
            pairs = heldout_problems(name, cfg.eval.difficulty, cfg.eval.num_samples, cfg.seed, pool)
            problems = [p for p, _ in pairs]
            prompts = [[{"role": "user", "content": p.prompt}] for p in problems]
            completions = greedy_completions(
                model, tokenizer, prompts, max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size
            )
            verdicts = pool.verify_many(list(zip(problems, completions, strict=True)))
            n = len(verdicts)
            results[name] = {
                "accuracy": sum(v.correct for v in verdicts) / n if n else None,
                "format_ok": sum(v.format_ok for v in verdicts) / n if n else None,
                "n": n,
            }
    scored = [r["accuracy"] for r in results.values() if r["accuracy"] is not None]
    return {
        "model": model_path,
        "difficulty": cfg.eval.difficulty,
        "envs": results,
        "mean_accuracy": sum(scored) / len(scored) if scored else None,
    }


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
        description="Greedy accuracy per env on held-out problems. Keys: model.path, envs.names, eval.*, output.",
        epilog=EXAMPLES,
    )
