"""Optimizers and learning-rate schedules for the learner.

`muon`: torch.optim.Muon for the 2-D weight matrices of the hidden layers; AdamW for everything else —
the token embeddings and the LM head (tied or not: their rows are per-token lookups, not linear maps an
orthogonalised update suits), norms, biases, scalars, and tensors of three or more dimensions (ZAYA's
stacked expert weights [E, out, in] and the CCA convolutions), which Muon does not accept. The ZAYA1
recipe runs Muon with momentum 0. Muon's step is scaled to AdamW's update RMS ("match_rms_adamw"), so
one learning rate serves both groups unless `rl.muon_lr` says otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from posttrain.rl.config import RLConfig


def split_muon_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden 2-D matrices for Muon, the rest for AdamW), trainable parameters only, each once."""
    excluded: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            excluded.update(id(p) for p in module.parameters())
    muon, adamw, seen = [], [], set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (muon if param.ndim == 2 and id(param) not in excluded else adamw).append(param)
    return muon, adamw


def build_optimizers(model: nn.Module, cfg: RLConfig) -> list[torch.optim.Optimizer]:
    adam_kwargs = {"lr": cfg.lr, "betas": (cfg.adam_beta1, cfg.adam_beta2), "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "adamw":
        return [torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **adam_kwargs)]
    muon_params, adam_params = split_muon_params(model)
    optimizers: list[torch.optim.Optimizer] = []
    if muon_params:
        optimizers.append(
            torch.optim.Muon(
                muon_params,
                lr=cfg.muon_lr or cfg.lr,
                momentum=cfg.muon_momentum,
                weight_decay=cfg.weight_decay,
                adjust_lr_fn="match_rms_adamw",
            )
        )
    if adam_params:
        optimizers.append(torch.optim.AdamW(adam_params, **adam_kwargs))
    return optimizers


def lr_factor(step: int, *, schedule: str, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr at `step` (0-based): linear warmup, then constant, linear or cosine decay."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        decay = 1.0 - progress
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise KeyError(f"unknown lr schedule {schedule!r}")
    return min_ratio + (1.0 - min_ratio) * decay


def build_schedulers(optimizers: list[torch.optim.Optimizer], cfg: RLConfig, total_steps: int) -> list[LambdaLR]:
    def factor(step: int) -> float:
        return lr_factor(
            step,
            schedule=cfg.lr_schedule,
            warmup_steps=cfg.warmup_steps,
            total_steps=total_steps,
            min_ratio=cfg.min_lr_ratio,
        )

    return [LambdaLR(opt, factor) for opt in optimizers]
