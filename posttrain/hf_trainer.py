"""Run Hugging Face / TRL trainers inside a posttrain run directory.

Two things differ from a plain `Trainer`: logs go to metrics.jsonl (and the `logging.report_to` trackers)
through `MetricsLogger`, and checkpoints are published through `CheckpointManager` (atomic `step-<N>/`
directories) instead of the trainer's own `checkpoint-<N>/` naming and rotation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from posttrain.devices import resolve_device
from posttrain.errors import UserError
from posttrain.models.router_balancing import RouterBalancer, find_routers
from posttrain.run_context import RunContext


class RunDirCallback(TrainerCallback):
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.summary: dict[str, Any] = {}
        self._report_every = max(1, ctx.cfg.trainer.max_steps // 10)

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        logs = dict(logs or {})
        if "train_runtime" in logs:  # the end-of-training summary is not a step
            self.summary = logs
            return
        self.ctx.metrics.log(state.global_step, logs)
        # plain lines stand in for the bar in CI and pipes (progress=auto); progress=off prints neither
        lines = not self.ctx.progress and self.ctx.cfg.logging.progress != "off"
        if lines and state.global_step % self._report_every == 0:
            # per-layer router metrics stay in metrics.jsonl; the line shows their layer means
            numbers = {k: v for k, v in logs.items() if isinstance(v, int | float) and "/layer" not in k}
            shown = ", ".join(f"{k}={v:.4g}" for k, v in numbers.items())
            print(f"step {state.global_step}/{state.max_steps}: {shown}", flush=True)

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **_: Any) -> None:
        written = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.ctx.checkpoints.commit(written, state.global_step)


class RouterBalancingCallback(TrainerCallback):
    """ZAYA's router bias balancing after every optimizer step, with the rule the RL learner uses.

    Without it SFT leaves the routers wherever the gradient put them, and an RL stage that balances would
    start by re-routing tokens the policy was trained on. Its Adam moments travel with each checkpoint,
    so a resumed run balances exactly as the uninterrupted one. Must run before `RunDirCallback`, whose
    `on_log` and `on_save` read what this one adds.
    """

    STATE_FILE = "router_balancer.pt"

    def __init__(self, model: Any, lr: float, resume_from: Path | None) -> None:
        self.model = model
        self.balancer = RouterBalancer(model, lr=lr)
        self.resume_from = resume_from
        self.metrics: dict[str, float] = {}
        self._detach: Any = None

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **_: Any) -> None:
        saved = self.resume_from / self.STATE_FILE if self.resume_from else None
        if saved is not None and saved.is_file():
            self.balancer.load_state_dict(torch.load(saved, weights_only=False))
        self._detach = self.balancer.attach(self.model)

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **_: Any) -> None:
        self.metrics = self.balancer.step()

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs is not None and "loss" in logs:
            logs.update(self.metrics)

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **_: Any) -> None:
        written = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        torch.save(self.balancer.state_dict(), written / self.STATE_FILE)

    def on_train_end(self, args: TrainingArguments, state: Any, control: Any, **_: Any) -> None:
        if self._detach is not None:
            self._detach()


class RunDirTrainer:
    """What a Trainer inside a posttrain run does differently: no model card in checkpoints/.partial (final/ is
    exported apart), and no warning about a tied weight that every checkpoint saves once."""

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """None: TRL writes one into output_dir (checkpoints/.partial) at every save."""

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        # A tied weight (lm_head = embed_tokens) is saved once, so its alias is "missing" from every
        # checkpoint although the load filled it; only report keys that are really absent.
        aliases: dict[int, list[str]] = {}
        for name, parameter in self.model.named_parameters(remove_duplicate=False):
            aliases.setdefault(id(parameter), []).append(name)
        missing = set(load_result.missing_keys)
        filled = {n for names in aliases.values() if not set(names) <= missing for n in names}
        super()._issue_warnings_after_load(
            load_result._replace(missing_keys=[k for k in load_result.missing_keys if k not in filled])
        )


class RunDirSFTTrainer(RunDirTrainer, SFTTrainer):
    """TRL's SFTTrainer, resumable from a posttrain checkpoint without noise or lost counters."""

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        # TRL keeps the cumulative `num_tokens` in the trainer, not in the saved state; the checkpoint's
        # log history holds the count it had reached.
        state = TrainerState.load_from_json(str(Path(resume_from_checkpoint) / TRAINER_STATE_NAME))
        counts = [log["num_tokens"] for log in state.log_history if "num_tokens" in log]
        if counts:
            self._total_train_tokens = int(counts[-1])


class RunDirRewardTrainer(RunDirTrainer, RewardTrainer):
    """TRL's RewardTrainer inside a posttrain run."""


def check_precision(cfg: Any) -> None:
    """`model.dtype` for Trainer stages: bfloat16 and float16 are mixed precision (float32 weights, autocast
    compute); float16's needs a GPU, so a CPU run is refused before any work."""
    if cfg.model.dtype == "float16" and resolve_device(cfg.device) == "cpu":
        raise UserError(
            "model.dtype=float16 needs a GPU for SFT (fp16 mixed precision); on a CPU use float32 or bfloat16"
        )


# TRL's configs still pass the renamed `gradient_checkpointing` argument; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)


def _training_args(ctx: RunContext) -> dict[str, Any]:
    """What every Trainer-driven stage shares: schedule, checkpoint cadence (published by `RunDirCallback`),
    seeds, device, precision and logging every step."""
    cfg, trainer_cfg = ctx.cfg, ctx.cfg.trainer
    return {
        "output_dir": str(ctx.checkpoints.staging),
        "max_steps": trainer_cfg.max_steps,
        "per_device_train_batch_size": trainer_cfg.batch_size,
        "gradient_accumulation_steps": trainer_cfg.grad_accum,
        "learning_rate": trainer_cfg.lr,
        "lr_scheduler_type": trainer_cfg.lr_scheduler,
        "warmup_steps": trainer_cfg.warmup_steps,
        "weight_decay": trainer_cfg.weight_decay,
        "max_grad_norm": trainer_cfg.max_grad_norm,
        "gradient_checkpointing": trainer_cfg.gradient_checkpointing,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": trainer_cfg.save_every,
        "save_total_limit": None,
        "report_to": "none",
        "disable_tqdm": not ctx.progress,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "use_cpu": resolve_device(cfg.device) == "cpu",
        "bf16": cfg.model.dtype == "bfloat16",
        "fp16": cfg.model.dtype == "float16",
        "max_length": cfg.data.max_seq_len,
        "dataloader_num_workers": 0,
    }


def _callbacks(ctx: RunContext, model: Any) -> tuple[list[TrainerCallback], RunDirCallback]:
    callback = RunDirCallback(ctx)
    callbacks: list[TrainerCallback] = [callback]
    trainer_cfg = ctx.cfg.trainer
    if trainer_cfg.router_balancing and find_routers(model):
        callbacks.insert(0, RouterBalancingCallback(model, trainer_cfg.router_balancing_lr, ctx.resume_from))
    return callbacks, callback


def build_sft_trainer(
    ctx: RunContext, model: Any, tokenizer: Any, dataset: Any
) -> tuple[RunDirSFTTrainer, RunDirCallback]:
    args = SFTConfig(**_training_args(ctx), completion_only_loss=True)
    callbacks, callback = _callbacks(ctx, model)
    trainer = RunDirSFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, callback


def build_reward_trainer(
    ctx: RunContext, model: Any, tokenizer: Any, dataset: Any
) -> tuple[RunDirRewardTrainer, RunDirCallback]:
    """TRL's RewardTrainer (Bradley-Terry loss on chosen/rejected conversations) on a num_labels=1 model."""
    args = RewardConfig(**_training_args(ctx))
    callbacks, callback = _callbacks(ctx, model)
    trainer = RunDirRewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, callback
