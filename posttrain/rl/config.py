"""The `rl` config section: advantage, loss, optimizer and learner settings, mounted in posttrain.config.schema.

Defaults follow the ZAYA1 recipe where it fixes a choice (MaxRL advantage, DPPO binary-TV mask with
δ = 0.1, Dr.GRPO "sequence mean of token sums" aggregation, no KL, Muon with momentum 0 for matrices).
Each field is documented in docs/rl.md. Range checks run in `__post_init__` and raise UserError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from posttrain.errors import UserError, require

ADVANTAGES = ("grpo", "maxrl", "rloo")
LOSSES = ("ppo_clip", "dppo", "gspo")
AGGREGATIONS = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean", "seq_mean_token_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3")
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("constant", "linear", "cosine")
OLD_LOGPROBS = ("recompute", "behaviour")


@dataclass
class ParamGroup:
    """A learning rate for the parameters whose name (as in `named_parameters()`) matches a regex."""

    match: str = ""
    lr: float | None = None  # required; 0 freezes the matched parameters

    def __post_init__(self) -> None:
        require(bool(self.match), "rl.param_groups: every group needs a non-empty `match` regex")
        require(self.lr is not None, f"rl.param_groups: {self.match!r} needs an lr (0 freezes)")
        try:
            re.compile(self.match)
        except re.error as exc:
            raise UserError(f"rl.param_groups: {self.match!r} is not a regular expression ({exc})") from exc
        require(self.lr >= 0, f"rl.param_groups: lr of {self.match!r} must be >= 0 (0 freezes)")


@dataclass
class RLConfig:
    # advantages
    advantage: str = "maxrl"
    grpo_scale_std: bool = True  # grpo only: divide by the group std (False = Dr.GRPO's unscaled variant)
    # policy loss
    loss: str = "dppo"
    epsilon_low: float = 0.2  # ppo_clip / gspo: lower clip range of the ratio
    epsilon_high: float = 0.28  # ppo_clip / gspo: upper clip range (clip-higher)
    dppo_delta: float = 0.1  # dppo: binary total-variation trust region
    aggregation: str = "seq_mean_token_sum"
    loss_norm_length: int = 0  # seq_mean_token_sum_norm: fixed length L; 0 = the batch's padded completion width
    old_logprobs: str = "recompute"  # anchor of the ratio: recompute with current weights, or the fleet's
    tis_cap: float = 2.0  # truncated importance weight min(exp(old − behaviour), C); 0 turns it off
    # KL to a frozen reference
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    kl_in_reward: bool = False  # True: the loop subtracts kl_coef·KL from the rewards instead of the loss
    # updates
    ppo_epochs: int = 1
    minibatches: int = 1  # optimizer steps per epoch over one rollout batch
    grad_accum: int = 1  # micro-batches per minibatch (memory only: the gradient is the same)
    max_grad_norm: float = 1.0  # 0 disables clipping
    shuffle: bool = True  # shuffle samples between epochs
    # optimizer and schedule
    optimizer: str = "muon"
    lr: float = 1e-5
    muon_lr: float = 0.0  # 0 = same as lr (Muon's update is RMS-matched to AdamW)
    muon_momentum: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # floor of linear/cosine decay, as a fraction of the peak
    # per-parameter learning rates, first match wins; matched parameters are stepped by AdamW (never Muon)
    # and follow the schedule. Example: [{match: '^model\.norm\.weight$', lr: 5.0e-2}]
    param_groups: list[ParamGroup] = field(default_factory=list)
    # model-side
    temperature: float = 1.0  # log-probs use softmax(logits / T), as the fleet's behaviour log-probs do
    logprob_chunk_size: int = 256  # sequence positions per LM-head chunk
    router_balancing: bool = True  # ZAYA only: update the routers' balancing biases after each optimizer step
    router_balancing_lr: float = 1e-3
    router_replay: bool = True  # MoE only: reuse the rollout's routing when the batch carries it
    # the loop (posttrain/rl/loop.py)
    prompts_per_step: int = 128  # problems per step (after dynamic sampling's refills)
    group_size: int = 16  # rollouts per problem with rollout.strategy=single
    sync_every: int = 2  # push weights to the fleet every N learner steps (ZAYA1: 2)
    # batch filters and async
    dynamic_sampling: bool = True  # drop groups whose rewards are all equal; the loop refills
    overlong_filter: bool = False  # mask samples truncated by the token budget out of the loss
    max_staleness: int = 2  # rollouts older than this many policy versions are dropped (0 = on-policy)

    def __post_init__(self) -> None:
        require(self.advantage in ADVANTAGES, f"rl.advantage must be one of {', '.join(ADVANTAGES)}")
        require(self.loss in LOSSES, f"rl.loss must be one of {', '.join(LOSSES)}")
        require(self.aggregation in AGGREGATIONS, f"rl.aggregation must be one of {', '.join(AGGREGATIONS)}")
        require(self.kl_estimator in KL_ESTIMATORS, f"rl.kl_estimator must be one of {', '.join(KL_ESTIMATORS)}")
        require(self.optimizer in OPTIMIZERS, f"rl.optimizer must be one of {', '.join(OPTIMIZERS)}")
        require(self.lr_schedule in LR_SCHEDULES, f"rl.lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        require(self.old_logprobs in OLD_LOGPROBS, f"rl.old_logprobs must be one of {', '.join(OLD_LOGPROBS)}")
        require(0 <= self.epsilon_low < 1, "rl.epsilon_low must be in [0, 1)")
        require(self.epsilon_high >= 0, "rl.epsilon_high must be >= 0")
        require(0 < self.dppo_delta <= 1, "rl.dppo_delta must be in (0, 1]")
        require(self.loss_norm_length >= 0, "rl.loss_norm_length must be >= 0 (0 = the batch's width)")
        require(self.tis_cap == 0 or self.tis_cap >= 1, "rl.tis_cap must be 0 (off) or >= 1")
        require(self.kl_coef >= 0, "rl.kl_coef must be >= 0")
        require(self.ppo_epochs >= 1, "rl.ppo_epochs must be >= 1")
        require(self.minibatches >= 1, "rl.minibatches must be >= 1")
        require(self.grad_accum >= 1, "rl.grad_accum must be >= 1")
        require(self.max_grad_norm >= 0, "rl.max_grad_norm must be >= 0 (0 disables clipping)")
        require(self.lr > 0, "rl.lr must be > 0")
        require(self.muon_lr >= 0, "rl.muon_lr must be >= 0 (0 = rl.lr)")
        require(0 <= self.muon_momentum < 1, "rl.muon_momentum must be in [0, 1)")
        require(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "rl.adam_beta1/adam_beta2 must be in [0, 1)")
        require(self.weight_decay >= 0, "rl.weight_decay must be >= 0")
        require(self.warmup_steps >= 0, "rl.warmup_steps must be >= 0")
        require(0 <= self.min_lr_ratio <= 1, "rl.min_lr_ratio must be in [0, 1]")
        require(self.temperature > 0, "rl.temperature must be > 0 (it follows rollout.temperature; RL needs sampling)")
        require(self.logprob_chunk_size >= 1, "rl.logprob_chunk_size must be >= 1")
        require(self.router_balancing_lr >= 0, "rl.router_balancing_lr must be >= 0")
        require(self.max_staleness >= 0, "rl.max_staleness must be >= 0")
        require(self.prompts_per_step >= 1, "rl.prompts_per_step must be >= 1")
        require(self.group_size >= 2, "rl.group_size must be >= 2 (advantages are relative to the group)")
        require(self.sync_every >= 1, "rl.sync_every must be >= 1")
        require(
            self.sync_every - 1 <= self.max_staleness,
            f"rl.sync_every={self.sync_every} makes rollouts up to {self.sync_every - 1} versions old; "
            f"raise rl.max_staleness to >= {self.sync_every - 1} or lower rl.sync_every",
        )
