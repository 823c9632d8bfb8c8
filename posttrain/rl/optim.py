"""Optimizers and learning-rate schedules for the learner.

`muon`: torch.optim.Muon for the 2-D weight matrices of the hidden layers; AdamW for everything else —
the token embeddings and the LM head (tied or not: their rows are per-token lookups, not linear maps an
orthogonalised update suits), norms, biases, scalars, and tensors of three or more dimensions (ZAYA's
stacked expert weights [E, out, in] and the CCA convolutions), which Muon does not accept. The ZAYA1
recipe runs Muon with momentum 0. Muon's step is scaled to AdamW's update RMS ("match_rms_adamw"), so
one learning rate serves both groups unless `rl.muon_lr` says otherwise.

`rl.param_groups` gives chosen parameters their own learning rate (AdamW, or frozen at lr 0). On the tiny
presets RL's held-out gain comes from the final norm's gain (the output temperature) while updates to the
body do not transfer to unseen prompts (docs/rl.md), so the rlve stage trains that one vector fast and the
rest slowly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from posttrain.errors import UserError
from posttrain.rl.config import ParamGroup, RLConfig


def param_lr_overrides(model: nn.Module, groups: list[ParamGroup]) -> dict[int, tuple[nn.Parameter, float]]:
    """id(param) -> (param, lr) for parameters an `rl.param_groups` regex matches; first match wins.

    A regex that matches nothing is a config error (a typo would otherwise silently train at `rl.lr`), and so
    are groups that freeze every parameter."""
    overrides: dict[int, tuple[nn.Parameter, float]] = {}
    used: set[str] = set()
    trained = False
    for name, param in model.named_parameters():
        group = next((g for g in groups if re.search(g.match, name)), None)
        if group is not None:
            overrides[id(param)] = (param, group.lr)
            used.add(group.match)
        trained = trained or group is None or group.lr > 0
    if not trained:
        raise UserError("rl.param_groups freezes every parameter of the model; nothing would train")
    unused = [g.match for g in groups if g.match not in used]
    if unused:
        raise UserError(
            f"rl.param_groups: {unused[0]!r} matches no parameter name of the model "
            "(list them with model.named_parameters(); rl.param_groups=[] trains everything at rl.lr)"
        )
    return overrides


def split_muon_params(model: nn.Module, skip: Collection[int] = ()) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden 2-D matrices for Muon, the rest for AdamW), trainable parameters not in `skip`, each once."""
    embeddings: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            embeddings.update(id(p) for p in module.parameters())
    muon, adamw, seen = [], [], set(skip)
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (muon if param.ndim == 2 and id(param) not in embeddings else adamw).append(param)
    return muon, adamw


def build_optimizers(model: nn.Module, cfg: RLConfig) -> list[torch.optim.Optimizer]:
    """The optimizers for `model`; freezes (requires_grad=False) what `rl.param_groups` gives lr 0."""
    adam_kwargs = {"lr": cfg.lr, "betas": (cfg.adam_beta1, cfg.adam_beta2), "weight_decay": cfg.weight_decay}
    overrides = param_lr_overrides(model, cfg.param_groups)
    by_lr: dict[float, list[nn.Parameter]] = {}
    for param, lr in overrides.values():
        if lr == 0:
            param.requires_grad_(False)
        elif param.requires_grad:
            by_lr.setdefault(lr, []).append(param)
    own_groups = [{"params": params, "lr": lr} for lr, params in by_lr.items()]
    if cfg.optimizer == "adamw":
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in overrides]
        return [torch.optim.AdamW(([{"params": rest}] if rest else []) + own_groups, **adam_kwargs)]
    muon_params, adam_params = split_muon_params(model, skip=set(overrides))
    adam_groups = ([{"params": adam_params}] if adam_params else []) + own_groups
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
    if adam_groups:
        optimizers.append(torch.optim.AdamW(adam_groups, **adam_kwargs))
    return optimizers


def states_fit(saved: list[dict], optimizers: list[torch.optim.Optimizer]) -> bool:
    """Whether checkpointed optimizer state dicts load into `optimizers`: the same optimizers with the same
    parameters per group, i.e. built under the same rl.optimizer and rl.param_groups."""
    saved_layout = [[len(group["params"]) for group in state["param_groups"]] for state in saved]
    return saved_layout == [[len(group["params"]) for group in opt.param_groups] for opt in optimizers]


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
