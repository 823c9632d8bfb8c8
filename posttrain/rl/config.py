"""The `rl` config section: advantage, loss, optimizer and learner settings, mounted in posttrain.config.schema.

Defaults follow the ZAYA1 recipe (MaxRL advantage, DPPO binary-TV mask with δ = 0.1 anchored on the rollout
policy, Dr.GRPO "sequence mean of token sums" aggregation, no KL, Muon with momentum 0 for matrices).
Each field is documented in docs/rl.md. Range checks run in `__post_init__` and raise UserError; advantage
and loss names are checked against their registries by `check_registered`, so a user's
`@register_advantage` / `@register_policy_loss` is accepted like a builtin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from posttrain.errors import UserError, require

AGGREGATIONS = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean", "seq_mean_token_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3")
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("constant", "linear", "cosine")
OLD_LOGPROBS = ("recompute", "behaviour")
PRECISIONS = ("fp32", "bf16")
SHARDINGS = ("none", "fsdp2")  # rl.learner_sharding


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
    old_logprobs: str = "behaviour"  # anchor of the ratio and trust region: the fleet's log-probs μ, or recompute
    tis_cap: float = 2.0  # recompute only: truncated importance weight min(exp(old − behaviour), C); 0 turns it off
    cispo_cap: float = 5.0  # cispo: upper bound of the detached ratio weight (ScaleRL's ε_max; TRL's epsilon_high)
    # KL to a frozen reference
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    kl_in_reward: bool = False  # True: kl_coef·Σ_t KL_t is subtracted from each reward instead of added to the loss
    kl_metric: bool = False  # report kl_start (KL of the sampling policy to the starting model) even with kl_coef 0
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
    # model-side (each sample is scored at the temperature it was drawn with)
    logits_budget_mb: float = 256.0  # most fp32 LM-head logits alive at once; above it the head runs in chunks
    router_balancing: bool = True  # ZAYA only: update the routers' balancing biases after each optimizer step
    router_balancing_lr: float = 1e-3
    router_replay: bool = True  # MoE only: reuse the rollout's routing when the batch carries it
    # the loop (posttrain/rl/loop.py)
    prompts_per_step: int = 128  # problems per step (after dynamic sampling's refills)
    group_size: int = 16  # rollouts per problem with rollout.strategy=single
    sync_every: int = 2  # push weights to the fleet every N learner steps (ZAYA1: 2)
    # batch filters and async
    dynamic_sampling: bool = True  # drop groups whose rewards are all equal; the loop refills
    reward_control: str = "none"  # shuffle: permute rewards across the batch before learning (a no-signal control)
    overlong_filter: bool = False  # mask samples truncated by the token budget out of the loss
    max_staleness: int = 2  # rollouts older than this many policy versions are dropped (0 = on-policy)
    # scaling out (docs/rl.md, "Scaling out")
    learner_workers: int = 1  # > 1: data-parallel replicas in Ray actors, gradients summed with torch.distributed
    learner_cpus_per_worker: float = 1.0  # Ray CPUs (and torch threads) of each replica; a GPU each on GPUs
    learner_sharding: str = "none"  # fsdp2: the replicas shard the decoder layers' weights, grads and AdamW state
    precision: str = "fp32"  # fp32 | bf16 (bf16 autocast with fp32 router, LM head, norms and residuals; GPU only)

    def __post_init__(self) -> None:
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
        require(self.cispo_cap > 0, "rl.cispo_cap must be > 0")
        require(self.reward_control in ("none", "shuffle"), "rl.reward_control must be none or shuffle")
        require(
            not (self.loss == "dppo" and self.old_logprobs == "recompute"),
            "rl.loss=dppo measures its trust region against the rollout policy; use rl.old_logprobs=behaviour",
        )
        require(self.logits_budget_mb > 0, "rl.logits_budget_mb must be > 0")
        require(self.router_balancing_lr >= 0, "rl.router_balancing_lr must be >= 0")
        require(self.max_staleness >= 0, "rl.max_staleness must be >= 0")
        require(self.prompts_per_step >= 1, "rl.prompts_per_step must be >= 1")
        require(self.group_size >= 2, "rl.group_size must be >= 2 (advantages are relative to the group)")
        require(self.sync_every >= 1, "rl.sync_every must be >= 1")
        require(self.learner_workers >= 1, "rl.learner_workers must be >= 1")
        require(self.learner_cpus_per_worker > 0, "rl.learner_cpus_per_worker must be > 0")
        require(self.learner_sharding in SHARDINGS, f"rl.learner_sharding must be one of {', '.join(SHARDINGS)}")
        if self.learner_sharding == "fsdp2":
            require(self.learner_workers >= 2, "rl.learner_sharding=fsdp2 shards across rl.learner_workers >= 2")
            # Muon orthogonalises whole matrices; a replica holds a shard of each
            require(self.optimizer == "adamw", "rl.learner_sharding=fsdp2 needs rl.optimizer=adamw")
        require(self.precision in PRECISIONS, f"rl.precision must be one of {', '.join(PRECISIONS)}")
        # Weights reach the fleet every sync_every steps; an async loop also generates step s+1 during step s's
        # update. So a rollout is up to sync_every - 1 versions old when synchronous, sync_every when async.
        oldest = self.sync_every if self.max_staleness > 0 else self.sync_every - 1
        require(
            oldest <= self.max_staleness,
            f"rl.sync_every={self.sync_every} makes rollouts up to {oldest} versions old, more than "
            f"rl.max_staleness={self.max_staleness}: they would be generated and dropped; raise rl.max_staleness "
            f"to {self.sync_every} or lower rl.sync_every",
        )

def check_registered(cfg: RLConfig) -> None:
    """`rl.advantage` and `rl.loss` must name registered functions (builtins, or a plugin's registrations)."""
    from posttrain.rl.advantages import ADVANTAGE_REGISTRY
    from posttrain.rl.losses import POLICY_LOSS_REGISTRY

    names = (("advantage", cfg.advantage, ADVANTAGE_REGISTRY), ("loss", cfg.loss, POLICY_LOSS_REGISTRY))
    for key, value, registry in names:
        require(value in registry, f"rl.{key} must be one of {', '.join(sorted(registry))}, got {value!r}")


@dataclass
class DatasetSpec:
    """A prompt dataset RL draws problems from; its rows' columns reach the scorer."""

    path: str = ""  # JSONL / JSON / parquet file, a saved `datasets` directory, or a hub id when online
    name: str = ""  # metric and route name (data:<name>); default: the file's stem
    weight: float = 1.0  # share of the problem mixture, next to problems.env_weight
    answer_column: str | None = "answer"  # becomes Problem.reference (graded by the reward); None: no reference
    reward: dict[str, Any] | None = None  # {name, kwargs} of a registered reward or `file.py:fn`; None: rewards.*
    max_rows: int = 0  # 0 = every row

    def __post_init__(self) -> None:
        require(bool(self.path), "problems.datasets: every dataset needs a path")
        require(self.weight >= 0, f"problems.datasets: weight of {self.path!r} must be >= 0")
        require(self.max_rows >= 0, f"problems.datasets: max_rows of {self.path!r} must be >= 0")


@dataclass
class ProblemsConfig:
    """What an RL stage trains on: the env curriculum (envs.*, curriculum.*) and/or prompt datasets, mixed."""

    env_weight: float = 1.0  # the env curriculum's share of the mixture; 0 = datasets only
    datasets: list[DatasetSpec] = field(default_factory=list)
    pass_rate_filter: float = 0.0  # drop (and never redraw) problems whose group pass rate is above this; 0 = off

    def __post_init__(self) -> None:
        require(self.env_weight >= 0, "problems.env_weight must be >= 0")
        require(0 <= self.pass_rate_filter < 1, "problems.pass_rate_filter must be in [0, 1) (0 turns it off)")
        require(
            self.env_weight > 0 or any(d.weight > 0 for d in self.datasets),
            "problems: nothing to draw from (problems.env_weight is 0 and no dataset has a weight > 0)",
        )


@dataclass
class TTCConfig:
    """Test-time-compute (aggregation) prompts mixed into RL: the problem, C candidate tails, the instruction.

    Each aggregation group is Markovian RSA with T = 1 whose round 1 is trained: the candidates (round 0) come
    from the current policy (`self`) or from an earlier checkpoint (`checkpoint`)."""

    fraction: float = 0.0  # share of each step's problems asked as aggregation prompts
    source: str = "self"  # self | checkpoint
    checkpoint: str | None = None  # source=checkpoint: an HF directory (e.g. a previous stage's final/)
    candidates: int = 8  # round-0 samples per problem (RSA's N for round 0)
    C: int = 4  # tails per aggregation prompt
    tau: int = 64  # tokens per tail

    def __post_init__(self) -> None:
        require(0 <= self.fraction <= 1, "ttc.fraction must be in [0, 1]")
        require(self.source in ("self", "checkpoint"), "ttc.source must be self or checkpoint")
        require(self.source == "self" or bool(self.checkpoint), "ttc.source=checkpoint needs ttc.checkpoint=DIR")
        require(1 <= self.C <= self.candidates, f"ttc.C must be in [1, ttc.candidates={self.candidates}]")
        require(self.tau >= 1, "ttc.tau must be >= 1")
