"""Run Hugging Face / TRL trainers inside a posttrain run directory.

Two things differ from a plain `Trainer`: logs go to metrics.jsonl (and TensorBoard) through
`MetricsLogger`, and checkpoints are published through `CheckpointManager` (atomic `step-<N>/`
directories) instead of the trainer's own `checkpoint-<N>/` naming and rotation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, TrainerCallback, TrainingArguments
from trl import RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from posttrain.devices import resolve_device
from posttrain.models.router_balancing import RouterBalancer, find_routers
from posttrain.runner import RunContext


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
        if not self.ctx.progress and state.global_step % self._report_every == 0:
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


# TRL's configs still pass the renamed `gradient_checkpointing` argument; nothing for users to act on.
warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning)


def _training_args(ctx: RunContext) -> dict[str, Any]:
    """What every Trainer-driven stage shares: schedule, checkpoint cadence (published by `RunDirCallback`),
    seeds, device and logging every step."""
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


def build_sft_trainer(ctx: RunContext, model: Any, tokenizer: Any, dataset: Any) -> tuple[SFTTrainer, RunDirCallback]:
    args = SFTConfig(**_training_args(ctx), completion_only_loss=True)
    callbacks, callback = _callbacks(ctx, model)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)
    return trainer, callback


def build_reward_trainer(
    ctx: RunContext, model: Any, tokenizer: Any, dataset: Any
) -> tuple[RewardTrainer, RunDirCallback]:
    """TRL's RewardTrainer (Bradley-Terry loss on chosen/rejected conversations) on a num_labels=1 model."""
    args = RewardConfig(**_training_args(ctx))
    callbacks, callback = _callbacks(ctx, model)
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks
    )
    trainer.remove_callback(PrinterCallback)
    return trainer, callback
