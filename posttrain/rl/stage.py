"""`RLStage`: the composition every RL stage is (rlve, warmup, mathcode, rlhf), differing only in config.

    problems  <- the env curriculum (envs.*, curriculum.*) and/or prompt datasets (problems.datasets), mixed
    scoring   <- env verdicts for env problems; rewards.* (or a dataset's own reward) for dataset rows
    asking    <- plain groups, Markovian RSA (rollout.strategy), aggregation prompts (ttc.*)
    fleet     <- Ray actors or one in-process engine (rollout.backend)
    learner   <- rl.* (LoRA via model.lora.*, a frozen reference when a KL is on)
    report    <- held-out sets scored before and after, over a temperature sweep (evaluation.py)

Every check that can fail on user input runs in `check`/`prepare`, before the run directory is touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrain.config import Config
from posttrain.errors import UserError, require
from posttrain.rl.problem_data import dataset_name
from posttrain.stagekit import Stage

RL_READS = (
    "model", "trainer.max_steps", "trainer.save_every", "trainer.keep_checkpoints", "envs", "curriculum",
    "rewards", "ray", "rollout", "rsa", "rl", "problems", "ttc", "kernels",
    "eval.difficulty", "eval.num_samples", "eval.max_new_tokens", "eval.batch_size", "eval.temperatures", "eval.pass_k",
)  # fmt: skip
TRAINER_KEYS = {  # what a Trainer key means in an RL stage
    "trainer.lr": "rl.lr",
    "trainer.lr_scheduler": "rl.lr_schedule",
    "trainer.warmup_steps": "rl.warmup_steps",
    "trainer.weight_decay": "rl.weight_decay",
    "trainer.max_grad_norm": "rl.max_grad_norm",
    "trainer.batch_size": "rl.prompts_per_step",
    "trainer.grad_accum": "rl.grad_accum",
    "trainer.router_balancing": "rl.router_balancing",
    "trainer.router_balancing_lr": "rl.router_balancing_lr",
    "data": "problems.datasets (prompt datasets for RL)",
    "eval.temperature": "use 'eval.temperatures' (the before/after report's sweep; greedy is always in it)",
    "eval.samples": "use 'eval.pass_k' (samples per prompt in the before/after report)",
}
PLOTS = {
    "reward": ["reward/mean"],
    "accuracy": ["accuracy", "accuracy/*", "pass_rate/*"],
    "difficulty": ["difficulty/*"],
    "time_split": ["time/generate", "time/verify", "time/learn", "time/sync"],
    "router_load": ["learn/router/max_load", "learn/router/load_entropy"],
    "kl": ["learn/kl_start", "learn/kl_behaviour"],
    "length": ["response_length"],
}


@dataclass
class Prepared:
    envs: list[str]
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> rows


class RLStage(Stage):
    reads = RL_READS
    instead = TRAINER_KEYS

    # --- checks --------------------------------------------------------------------------------
    def unread_keys(self, cfg: Any, keys):
        unread = super().unread_keys(cfg, keys)
        if cfg is not None and not cfg.problems.datasets:
            hint = "rewards.* grade prompt datasets (problems.datasets); env problems are graded by their envs"
            unread += [(k, hint) for k in keys if k.startswith("rewards.") and not k.startswith("rewards.shaping")]
        if cfg is not None and cfg.rollout.strategy != "markovian_rsa":  # TTC prompts take only rsa's templates
            templates = ("rsa.aggregation_template", "rsa.candidate_template") if cfg.ttc.fraction > 0 else ()
            hint = "rsa.* shapes Markovian RSA rollouts (rollout.strategy=markovian_rsa); TTC prompts use ttc.*"
            unread += [(k, hint) for k in keys if k.startswith("rsa.") and k not in templates]
        return unread

    def check(self, cfg: Config) -> None:
        from posttrain.devices import resolve_device
        from posttrain.envs import expand_names, make_env
        from posttrain.rl.config import check_registered
        from posttrain.rl.precision import check_precision
        from posttrain.rollout.engine import check_engine

        check_registered(cfg.rl)
        check_engine(cfg.rollout.engine, cfg.device)
        check_precision(cfg.rl.precision, resolve_device(cfg.device))
        check_trained_sampling(cfg)
        envs = expand_names(list(cfg.envs.names)) if cfg.problems.env_weight > 0 else []
        for name in envs:
            make_env(name)  # unknown names fail before any work
        check_reward_floor(cfg, envs)
        if uses_sandbox(cfg, envs):
            from posttrain.rewards.sandbox import isolation_level

            try:
                isolation_level(cfg.rewards.sandbox.isolation)  # no safe sandbox: one line before any work
            except ValueError as exc:
                raise UserError(f"rewards.sandbox.isolation: {exc}") from None

    def prepare(self, cfg: Config) -> Prepared:
        from posttrain.envs import expand_names
        from posttrain.models import model_skeleton
        from posttrain.rl.optim import param_lr_overrides
        from posttrain.rl.problem_data import load_problem_rows

        param_lr_overrides(model_skeleton(cfg.model.path), cfg.rl.param_groups)  # a regex naming no parameter
        if cfg.ttc.fraction > 0 and cfg.ttc.source == "checkpoint":  # (may be a stage built just before this one)
            from posttrain.models import check_model_path

            check_model_path(cfg.ttc.checkpoint)
        envs = expand_names(list(cfg.envs.names)) if cfg.problems.env_weight > 0 else []
        datasets = {dataset_name(spec): load_problem_rows(spec, cfg.seed) for spec in cfg.problems.datasets}
        return Prepared(envs, datasets)

    def check_resume(self, cfg: Config, checkpoint: Path) -> None:
        """The checkpoint's optimizer state must fit this config's optimizers."""
        import torch

        from posttrain.models import model_skeleton
        from posttrain.rl.loop import LEARNER_FILE
        from posttrain.rl.optim import build_optimizers, states_fit

        saved = torch.load(checkpoint / LEARNER_FILE, map_location="meta", weights_only=False)["optimizers"]
        if not states_fit(saved, build_optimizers(model_skeleton(cfg.model.path), cfg.rl)):
            raise UserError(
                f"resume: {checkpoint} was saved with another rl.optimizer / rl.param_groups than this config's; "
                "resume with the values in the run's config.yaml, or start a new run"
            )

    # --- the run -------------------------------------------------------------------------------
    def run(self, prepared: Prepared, ctx: Any) -> dict:
        from posttrain.console import StepReporter
        from posttrain.envs import EnvPool
        from posttrain.export import export_final
        from posttrain.plots import plot_metrics
        from posttrain.rl.loop import RLLoop, RLParts, resume_weights
        from posttrain.rollout.backend import make_fleet

        cfg = ctx.cfg
        warm = prepared.envs or ["add"]
        with EnvPool(cfg.envs, warm=warm) as pool:
            sets = self.eval_sets(prepared, cfg, pool)
            before = self.report(cfg.model.path, sets, cfg)
            policy = resume_weights(ctx.resume_from)
            learner = build_learner(cfg, policy)
            try:
                # with LoRA the checkpoint holds the adapter: the fleet starts from the base and gets synced weights
                start = str(policy if policy is not None and cfg.model.lora.r == 0 else cfg.model.path)
                source = build_source(prepared, cfg, pool)
                scorer = build_scorer(prepared, cfg, pool)
                with make_fleet(
                    start, cfg.rollout, cfg.ray, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device
                ) as fleet, _candidates_fleet(cfg) as candidates:
                    collector = build_collector(cfg, fleet, scorer, candidates)
                    loop = RLLoop(ctx, RLParts(fleet, learner, source, collector, fleet.tokenizer))
                    with StepReporter(cfg.trainer.max_steps, ctx.progress, desc=self.name) as reporter:
                        loop.run(on_step=reporter.update)
                export_final(learner.model, fleet.tokenizer, ctx.final)
            finally:
                learner.shutdown()  # data-parallel replicas (and the Ray session, if the learner started it)
            after = self.report(str(ctx.final), sets, cfg)
        plot_metrics(ctx.dir / "metrics.jsonl", ctx.plots, PLOTS)
        return self.summarize(cfg, loop.step, before, after, source, ctx)

    def eval_sets(self, prepared: Prepared, cfg: Config, pool: Any) -> list:
        """Held-out problems of every env and dataset this stage trains on."""
        from posttrain.evaluation import env_eval_sets
        from posttrain.rl.problem_data import dataset_eval_sets

        sets = env_eval_sets(prepared.envs, cfg.eval.difficulty, cfg.eval.num_samples, cfg.seed, pool)
        return sets + dataset_eval_sets(prepared.datasets, cfg, build_dataset_scorers(cfg))

    def report(self, model_path: str, sets: list, cfg: Config) -> dict:
        from posttrain.evaluation import evaluate_sets
        from posttrain.rollout.engine import build_engine

        engine = build_engine(cfg.rollout.engine, model_path, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device)
        return evaluate_sets(
            engine, sets, eval_temperatures(cfg), samples=cfg.eval.pass_k, k=cfg.eval.pass_k,
            max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size, seed=cfg.seed,
        )  # fmt: skip

    def summarize(self, cfg: Config, steps: int, before: dict, after: dict, source: Any, ctx: Any) -> dict:
        from posttrain.evaluation import comparison, report_table, temperature_label

        train_label = temperature_label(cfg.rollout.temperature)
        print(report_table(before, after, cfg.eval.pass_k, train_label), flush=True)
        return {
            "stage": self.name,
            "steps": steps,
            "comparison": comparison(before, after, train_label),
            "before": _without_per_problem(before),
            "after": _without_per_problem(after),
            "sources": source.stats(),
            "final": str(ctx.final),
        }


# --- builders (module functions, so probes and benchmarks compose the same parts) ---------------------
def eval_temperatures(cfg: Config) -> list[float]:
    """The sweep, always including greedy and the temperature RL samples at."""
    return sorted({0.0, cfg.rollout.temperature, *cfg.eval.temperatures})


def uses_sandbox(cfg: Config, envs: list[str]) -> bool:
    """Whether model-written programs will run: a code env (the `code` tag), or a `code` reward."""
    from posttrain.envs import make_env

    specs = [*cfg.rewards.components, *(d.reward for d in cfg.problems.datasets if d.reward)]
    names = {s.get("name") if isinstance(s, dict) else s.name for s in specs} if cfg.problems.datasets else set()
    return "code" in names or any("code" in getattr(make_env(e), "tags", ()) for e in envs)


def check_trained_sampling(cfg: Config) -> None:
    """Samples the learner trains on must come from a distribution it can score: softmax(logits / T) with T > 0,
    no top-p or top-k truncation (the learner's log-probs would not be the sampler's)."""
    rollout, rsa = cfg.rollout, cfg.rsa
    trained: list[tuple[str, float, float, int]] = []
    if rollout.strategy == "markovian_rsa":
        for t in rsa.train_rounds:
            if t <= rsa.T:
                final = t == rsa.T
                temperature = rsa.final_temperature if final else rollout.temperature
                top_p = rsa.final_top_p if final else rollout.top_p
                keys = "rsa.final_temperature/rsa.final_top_p" if final else "rollout.temperature/top_p/top_k"
                trained.append((f"RSA round {t} ({keys})", temperature, top_p, rollout.top_k))
    else:
        trained.append(("rollout.temperature/top_p/top_k", rollout.temperature, rollout.top_p, rollout.top_k))
    for what, temperature, top_p, top_k in trained:
        require(temperature > 0, f"{what}: trained samples need temperature > 0 (greedy groups carry no signal)")
        require(
            top_p == 1.0 and top_k == 0,
            f"{what}: trained samples must be drawn without top-p/top-k truncation (top_p=1, top_k=0); "
            "the learner scores them under the full softmax",
        )


def check_reward_floor(cfg: Config, envs: list[str]) -> None:
    """`maxrl` divides by the group mean reward: refuse, up front, any scorer that can give a negative reward;
    and a gate whose closed value 0 is not below what its components can score."""
    if any(spec.reward is None for spec in cfg.problems.datasets):
        from posttrain.rewards.bounds import gate_error

        error = gate_error(cfg.rewards)
        if error is not None:
            raise UserError(error)
    if cfg.rl.advantage != "maxrl":
        return
    from posttrain.envs import make_env

    for name in envs:
        if getattr(make_env(name), "min_reward", 0.0) < 0:
            raise UserError(f"rl.advantage=maxrl needs rewards >= 0, but env {name} can give negative rewards; "
                            "use rl.advantage=grpo (or rloo)")
    if cfg.problems.datasets:
        from posttrain.rewards.bounds import reward_floor

        for spec in cfg.problems.datasets:
            floor = reward_floor(spec.reward if spec.reward else cfg.rewards)
            if floor < 0:
                raise UserError(
                    f"rl.advantage=maxrl needs rewards >= 0, but the reward of dataset {dataset_name(spec)!r} can "
                    f"be as low as {floor:g}; use rl.advantage=grpo (or rloo)"
                )


def build_learner(cfg: Config, policy: Path | None = None):
    """The learner `rl.learner_workers` asks for: a Learner in this process, or data-parallel replicas in Ray
    actors (posttrain.rl.distributed), each building the same Learner as `build_local_learner`."""
    if cfg.rl.learner_workers == 1:
        return build_local_learner(cfg, policy)
    from functools import partial

    from posttrain.devices import resolve_device
    from posttrain.rl.distributed import DistributedLearner

    return DistributedLearner(
        partial(build_local_learner, cfg, policy),
        cfg.rl.learner_workers,
        model=load_policy(cfg, policy),
        ray_cfg=cfg.ray,
        cpus_per_worker=cfg.rl.learner_cpus_per_worker,
        gpus_per_worker=1.0 if resolve_device(cfg.device) == "cuda" else 0.0,
        sharding=cfg.rl.learner_sharding,
    )


def load_policy(cfg: Config, policy: Path | None = None):
    """The policy at `model.path` (or a checkpoint's `policy`: full weights, or a LoRA adapter on the base)."""
    import torch

    from posttrain.models import load_model
    from posttrain.models.lora import apply_lora, load_adapter

    lora = cfg.model.lora.r > 0
    start = str(policy) if policy is not None and not lora else cfg.model.path
    model, _ = load_model(start, seed=cfg.seed, dtype=getattr(torch, cfg.model.dtype))
    if lora and policy is not None:
        return load_adapter(model, policy)
    return apply_lora(model, cfg.model.lora, seed=cfg.seed)


def build_local_learner(cfg: Config, policy: Path | None = None, learner_cls: type | None = None):
    """A `learner_cls` (default Learner) in this process over `load_policy`'s model."""
    from posttrain.devices import resolve_kernels
    from posttrain.rl.learner import Learner

    model = load_policy(cfg, policy)
    needs_reference = cfg.rl.kl_coef > 0 or cfg.rl.kl_metric
    reference = None
    if needs_reference and cfg.model.lora.r == 0:
        reference = copy.deepcopy(model)  # frozen start; with LoRA the base with adapters disabled serves, no copy
    kernels = resolve_kernels(cfg.kernels, cfg.device)
    return (learner_cls or Learner)(model, cfg.rl, ref_model=reference, total_steps=cfg.trainer.max_steps,
                                    device=cfg.device, seed=cfg.seed, kernels=kernels)  # fmt: skip


def build_source(prepared: Prepared, cfg: Config, pool: Any):
    from posttrain.envs import make_curriculum, make_env
    from posttrain.rl.sources import CurriculumSource, DatasetSource, MixtureSource

    parts = []
    if prepared.envs:
        curriculum = make_curriculum(
            cfg.curriculum,
            prepared.envs,
            weights=dict(cfg.envs.weights),
            max_difficulties={name: make_env(name).max_difficulty for name in prepared.envs},
            seed=cfg.seed,
        )
        parts.append((CurriculumSource(curriculum, pool), cfg.problems.env_weight))
    for spec in cfg.problems.datasets:
        name = dataset_name(spec)
        rows = prepared.datasets[name]
        parts.append((DatasetSource(name, rows, answer_column=spec.answer_column, seed=cfg.seed), spec.weight))
    return parts[0][0] if len(parts) == 1 else MixtureSource(parts, seed=cfg.seed)


def build_dataset_scorers(cfg: Config) -> dict:
    from posttrain.rewards.compose import build as build_one
    from posttrain.rewards.config import build_reward
    from posttrain.rl.scoring import RewardScorer

    scorers = {}
    for spec in cfg.problems.datasets:
        name = dataset_name(spec)
        reward = build_one(spec.reward) if spec.reward else build_reward(cfg.rewards, canary=False)
        judge = build_one(cfg.rewards.correct_by) if cfg.rewards.correct_by is not None else None
        scorers[name] = RewardScorer(reward, name=name, correct_at=cfg.rewards.correct_at, correct_by=judge)
    return scorers


def build_scorer(prepared: Prepared, cfg: Config, pool: Any):
    from posttrain.rl.scoring import EnvScorer, RoutedScorer

    env_scorer = EnvScorer(pool) if prepared.envs else None
    if not cfg.problems.datasets:
        return env_scorer
    return RoutedScorer(env_scorer, build_dataset_scorers(cfg))


def build_collector(cfg: Config, fleet: Any, scorer: Any, candidates: Any):
    from posttrain.rewards.shaping import RepetitionCanary
    from posttrain.rl.collect import Collector

    threshold = cfg.rewards.shaping.repetition_threshold
    return Collector(
        fleet,
        scorer,
        group_size=cfg.rl.group_size,
        seed=cfg.seed,
        max_steps=cfg.trainer.max_steps,
        rsa=cfg.rsa if cfg.rollout.strategy == "markovian_rsa" else None,
        ttc=cfg.ttc if cfg.ttc.fraction > 0 else None,
        candidates=candidates.generate if candidates is not None else None,
        canary=RepetitionCanary(threshold=threshold) if threshold > 0 else None,
        templates=cfg.rsa,
    )


class _NoFleet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _candidates_fleet(cfg: Config):
    """An earlier checkpoint's fleet, when aggregation prompts take their candidates from it."""
    if cfg.ttc.fraction <= 0 or cfg.ttc.source != "checkpoint":
        return _NoFleet()
    from dataclasses import replace

    from posttrain.rollout.backend import LocalFleet

    return LocalFleet(cfg.ttc.checkpoint, replace(cfg.rollout, backend="local", num_workers=1), seed=cfg.seed,
                      dtype=cfg.model.dtype, device=cfg.device)  # fmt: skip


def _without_per_problem(report: dict) -> dict:
    return {name: {label: {k: v for k, v in cell.items() if k != "per_problem"} for label, cell in row.items()}
            for name, row in report.items()}  # fmt: skip
