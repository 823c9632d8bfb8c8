"""Stage 3, RLVE: RL on verifiable environments whose difficulty follows the model (arXiv 2511.07317).

Composition only: a curriculum over posttrain.envs, the Ray rollout fleet (single samples or Markovian
RSA), env verdicts gated by the repetition canary, and the learner, joined by posttrain.rl.loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.config import Config
from posttrain.envs import EnvPool, expand_names, make_curriculum, make_env
from posttrain.eval_cli import evaluate_envs
from posttrain.export import export_final
from posttrain.models import check_model_path, load_model
from posttrain.plots import plot_metrics
from posttrain.rl.learner import Learner
from posttrain.rl.loop import RLLoop, RLParts, resume_weights
from posttrain.rollout.fleet import RolloutFleet
from posttrain.runner import RunContext

PLOTS = {
    "reward": ["reward/mean"],
    "accuracy": ["accuracy", "pass_rate/*"],
    "difficulty": ["difficulty/*"],
    "time_split": ["time/generate", "time/verify", "time/learn", "time/sync"],
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
    check_model_path(cfg.model.path)
    return Prepared(check(cfg))


def accuracy_table(before: dict, after: dict) -> str:
    lines = [f"{'env':<24}{'before':>8}{'after':>8}", "-" * 40]
    for env, row in before["envs"].items():
        lines.append(f"{env:<24}{row['accuracy']:>8.1%}{after['envs'][env]['accuracy']:>8.1%}")
    lines.append(f"{'mean':<24}{before['mean_accuracy']:>8.1%}{after['mean_accuracy']:>8.1%}")
    return "\n".join(lines)


def run(prepared: Prepared, ctx: RunContext) -> dict:
    cfg = ctx.cfg
    before = evaluate_envs(cfg.model.path, prepared.envs, cfg)
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
    after = evaluate_envs(str(ctx.final), prepared.envs, cfg)
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
