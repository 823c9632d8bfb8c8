"""Stage 3, RLVE: RL on verifiable environments whose difficulty follows the model (arXiv 2511.07317).

Composition only: a curriculum over posttrain.envs, the Ray rollout fleet (single samples or Markovian
RSA), env verdicts gated by the repetition canary, and the learner, joined by posttrain.rl.loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from posttrain.config import Config
from posttrain.envs import EnvPool, expand_names, make_curriculum, make_env
from posttrain.errors import UserError
from posttrain.eval_cli import evaluate_envs_under
from posttrain.export import export_final
from posttrain.models import load_model, model_skeleton
from posttrain.plots import plot_metrics
from posttrain.rl.learner import Learner
from posttrain.rl.loop import LEARNER_FILE, RLLoop, RLParts, resume_weights
from posttrain.rl.optim import build_optimizers, param_lr_overrides, states_fit
from posttrain.rollout.fleet import RolloutFleet
from posttrain.runner import RunContext

PLOTS = {
    "reward": ["reward/mean"],
    "accuracy": ["accuracy", "pass_rate/*"],
    "difficulty": ["difficulty/*"],
    "time_split": ["time/generate", "time/verify", "time/learn", "time/sync"],
    "router_load": ["learn/router/max_load", "learn/router/load_entropy"],
}


@dataclass
class Prepared:
    envs: list[str]


def check(cfg: Config) -> list[str]:
    """The env names, expanded; the checks that need no model, so they run before a previous stage is built."""
    names = expand_names(list(cfg.envs.names))
    for name in names:
        make_env(name)  # unknown names fail before any work
    return names


def prepare(cfg: Config) -> Prepared:
    param_lr_overrides(model_skeleton(cfg.model.path), cfg.rl.param_groups)  # a regex naming no parameter
    return Prepared(check(cfg))


def check_resume(cfg: Config, resume_from: Path) -> None:
    """The checkpoint's optimizer state must fit this config's optimizers; checked before anything is written."""
    saved = torch.load(resume_from / LEARNER_FILE, map_location="meta", weights_only=False)["optimizers"]
    if not states_fit(saved, build_optimizers(model_skeleton(cfg.model.path), cfg.rl)):
        raise UserError(
            f"resume: {resume_from} was saved with another rl.optimizer / rl.param_groups than this config's; "
            "resume with the values in the run's config.yaml, or start a new run"
        )


def evaluate(model_path: str, envs: list[str], cfg: Config) -> dict:
    """Held-out accuracy under `cfg.eval` and, when that samples, greedy too: RL trains the sampled policy,
    and a greedy column shows whether the gain is more than a sharper distribution."""
    kinds = {"eval": cfg.eval}
    if cfg.eval.temperature > 0:
        kinds["greedy"] = replace(cfg.eval, temperature=0.0, samples=1)
    return dict(zip(kinds, evaluate_envs_under(model_path, envs, cfg, list(kinds.values())), strict=True))


def _pair(before: float | None, after: float | None) -> str:
    """Two right-aligned percentages; None (an env with no held-out prompt) shows as n/a."""
    return "".join(f"{'n/a' if v is None else format(v, '.1%'):>10}" for v in (before, after))


def accuracy_table(before: dict, after: dict) -> str:
    """Before/after accuracy per env and their mean, one column pair per evaluation in the reports."""
    kinds = list(before)
    titles = {
        kind: "greedy" if before[kind]["temperature"] == 0 else f"pass@1 T={before[kind]['temperature']:g}"
        for kind in kinds
    }
    head = f"{'':<16}" + "".join(f"{titles[k]:>20}" for k in kinds)
    sub = f"{'env':<16}" + f"{'before':>10}{'after':>10}" * len(kinds)
    rows = [head, sub, "-" * len(sub)]
    for env in before[kinds[0]]["envs"]:
        pairs = (_pair(before[k]["envs"][env]["accuracy"], after[k]["envs"][env]["accuracy"]) for k in kinds)
        rows.append(f"{env:<16}" + "".join(pairs))
    rows.append(f"{'mean':<16}" + "".join(_pair(before[k]["mean_accuracy"], after[k]["mean_accuracy"]) for k in kinds))
    return "\n".join(rows)


def run(prepared: Prepared, ctx: RunContext) -> dict:
    cfg = ctx.cfg
    before = evaluate(cfg.model.path, prepared.envs, cfg)
    start = str(resume_weights(ctx.resume_from) or cfg.model.path)
    model, tokenizer = load_model(start, seed=cfg.seed)
    learner = Learner(model, cfg.rl, total_steps=cfg.trainer.max_steps, device=cfg.device, seed=cfg.seed)
    curriculum = make_curriculum(
        cfg.curriculum,
        prepared.envs,
        weights=dict(cfg.envs.weights),
        max_difficulties={name: make_env(name).max_difficulty for name in prepared.envs},
        seed=cfg.seed,
    )
    with (
        EnvPool(cfg.envs, warm=prepared.envs) as pool,
        RolloutFleet(start, cfg.rollout, cfg.ray, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device) as fleet,
    ):
        loop = RLLoop(ctx, RLParts(fleet, learner, pool, curriculum, tokenizer))
        loop.run(on_step=None)
    export_final(learner.model, tokenizer, ctx.final)
    after = evaluate(str(ctx.final), prepared.envs, cfg)
    plot_metrics(ctx.dir / "metrics.jsonl", ctx.plots, PLOTS)
    print(accuracy_table(before, after))
    return {
        "stage": "rlve",
        "steps": loop.step,
        "before": before,
        "after": after,
        "curriculum": curriculum.stats(),
        "final": str(ctx.final),
    }
