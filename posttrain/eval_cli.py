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
  posttrain eval model.path=runs/rlve/final envs.names=[add] eval.temperature=1.0 eval.samples=4
"""


def evaluate_envs(model_path: str, names: Sequence[str], cfg: Config) -> dict:
    """{"model", "difficulty", "temperature", "samples", "envs": {name: {"accuracy", "format_ok", "n"}},
    "mean_accuracy"}; with eval.samples > 1 each env also has pass@<samples>.

    Uses `cfg.eval` (difficulty, prompt count, decoding), `cfg.envs` (pool) and `cfg.seed`. With
    eval.temperature > 0, accuracy is pass@1: the mean over eval.samples answers per prompt; n counts prompts.
    """
    from posttrain.envs import EnvPool, expand_names, make_env
    from posttrain.evaluation import env_eval_sets, evaluate_sets, temperature_label
    from posttrain.rollout.engine import build_engine

    ev = cfg.eval
    env_names = expand_names(list(names))
    for name in env_names:
        make_env(name)  # unknown names fail before any work
    engine = build_engine("hf", model_path, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device)
    with EnvPool(cfg.envs, warm=env_names) as pool:
        sets = env_eval_sets(env_names, ev.difficulty, ev.num_samples, cfg.seed, pool)
        report = evaluate_sets(
            engine, sets, [ev.temperature], samples=ev.samples, k=ev.samples,
            max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, seed=cfg.seed,
        )  # fmt: skip
    label = temperature_label(ev.temperature)
    results = {}
    for name in env_names:
        cell = report[name][label]
        results[name] = {"accuracy": cell["pass@1"], "format_ok": cell["format_ok"], "n": cell["n"]}
        if ev.samples > 1:
            results[name][f"pass@{ev.samples}"] = cell[f"pass@{ev.samples}"]
    scored = [r["accuracy"] for r in results.values() if r["accuracy"] is not None]
    return {
        "model": model_path,
        "difficulty": ev.difficulty,
        "temperature": ev.temperature,
        "samples": ev.samples,
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
        description=(
            "Accuracy per env on held-out problems: greedy, or pass@1 over sampled answers with eval.temperature > 0."
            " Keys: model.path, envs.names, eval.*, output."
        ),
        epilog=EXAMPLES,
    )
