"""Policy losses, loss aggregation, KL estimators and the truncated importance-sampling correction.

A policy loss maps per-token log-probs under the current policy (with grad), the anchor ("old")
log-probs, advantages [B, T] and the loss mask to a per-token loss [B, T] plus boolean diagnostics; a new
one is one decorated function (`@register_policy_loss("name")`). `compute_policy_loss` adds the TIS
weights and the KL term around it and aggregates. The math of each piece is written out in docs/rl.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from posttrain.registry import registrar

Tensor = torch.Tensor


@dataclass(frozen=True)
class LossParams:
    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    dppo_delta: float = 0.1
    dppo_ratio_cap: float = 20.0
    cispo_cap: float = 5.0


PolicyLossFn = Callable[[Tensor, Tensor, Tensor, Tensor, LossParams], tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSS_REGISTRY: dict[str, PolicyLossFn] = {}


register_policy_loss = registrar(POLICY_LOSS_REGISTRY, "policy loss")


@register_policy_loss("ppo_clip")
def ppo_clip(logprobs: Tensor, old: Tensor, adv: Tensor, mask: Tensor, p: LossParams):
    """−min(r·A, clip(r, 1 − ε_low, 1 + ε_high)·A) per token, r = π/π_old; ε_high > ε_low is clip-higher."""
    ratio = torch.exp(logprobs - old)
    clipped = ratio.clamp(1 - p.epsilon_low, 1 + p.epsilon_high)
    loss = -torch.minimum(ratio * adv, clipped * adv)
    low = (ratio < 1 - p.epsilon_low) & (adv < 0)
    high = (ratio > 1 + p.epsilon_high) & (adv > 0)
    return loss, {"clip_frac_low": low, "clip_frac_high": high, "clip_frac": low | high}


@register_policy_loss("dppo")
def dppo(logprobs: Tensor, old: Tensor, adv: Tensor, mask: Tensor, p: LossParams):
    """DPPO with the binary total-variation trust region (Qi et al. 2026, arXiv 2602.04879).

    Collapse each next-token distribution to {sampled token, everything else}. The TV distance between
    the old and the new binary distributions is |π(a) − π_old(a)|. Rule implemented here, per token:

        keep = (π − π_old ≤ δ)   if A > 0   (raising a good token: stop once it gained more than δ)
        keep = (π_old − π ≤ δ)   if A ≤ 0   (lowering a bad token: stop once it lost more than δ)
        loss = −A · r · keep,  r = π/π_old,

    with the gradient's ratio coefficient truncated at `dppo_ratio_cap` (value −A·min(r, C)·keep, gradient
    −A·min(r, C)·∇log π·keep), so a token far from its anchor cannot dominate. Unlike PPO's ratio clip,
    a rare token may move a lot in ratio while its absolute probability change stays below δ.
    """
    ratio = torch.exp(logprobs - old)
    shift = torch.exp(logprobs) - torch.exp(old)
    keep = torch.where(adv > 0, shift <= p.dppo_delta, shift >= -p.dppo_delta).detach()
    capped = (ratio.clamp(max=p.dppo_ratio_cap) / ratio).detach()
    loss = -adv * ratio * capped * keep
    up = ~keep & (adv > 0)
    down = ~keep & (adv <= 0)
    return loss, {"clip_frac_high": up, "clip_frac_low": down, "clip_frac": ~keep}


@register_policy_loss("cispo")
def cispo(logprobs: Tensor, old: Tensor, adv: Tensor, mask: Tensor, p: LossParams):
    """CISPO (MiniMax-M1; ScaleRL): −sg(min(r, ε_max)) · A · log π per token.

    The ratio only weights the REINFORCE term and is never clipped to zero, so every token keeps a gradient;
    capping the (detached) weight at ε_max = `cispo_cap` bounds the variance. TRL's `loss_type="cispo"`."""
    ratio = torch.exp(logprobs - old)
    weight = ratio.clamp(max=p.cispo_cap).detach()
    capped = (ratio > p.cispo_cap) & (adv > 0)
    flags = {"clip_frac_high": capped, "clip_frac_low": torch.zeros_like(capped), "clip_frac": capped}
    return -weight * adv * logprobs, flags


@register_policy_loss("gspo")
def gspo(logprobs: Tensor, old: Tensor, adv: Tensor, mask: Tensor, p: LossParams):
    """Sequence-level ratio s = exp(mean_t log(π/π_old)) (geometric mean over the completion), clipped
    like PPO; every token of a sequence carries the same loss. GSPO uses much smaller ε than PPO (~3e-4)."""
    lengths = mask.sum(-1, keepdim=True).clamp(min=1)
    seq_ratio = torch.exp(((logprobs - old) * mask).sum(-1, keepdim=True) / lengths)
    clipped = seq_ratio.clamp(1 - p.epsilon_low, 1 + p.epsilon_high)
    loss = -torch.minimum(seq_ratio * adv, clipped * adv)
    low = ((seq_ratio < 1 - p.epsilon_low) & (adv < 0)).expand_as(mask)
    high = ((seq_ratio > 1 + p.epsilon_high) & (adv > 0)).expand_as(mask)
    return loss.expand_as(mask), {"clip_frac_low": low, "clip_frac_high": high, "clip_frac": low | high}


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_seqs: float | None = None,
    num_tokens: float | None = None,
    norm_length: int | None = None,
) -> Tensor:
    """Reduce a [B, T] loss to a scalar.

    `num_seqs`/`num_tokens` override the denominators with those of the whole minibatch, so micro-batch
    losses can simply be summed under gradient accumulation.
      token_mean:              Σ l·m / Σ m                      (DAPO; TRL "dapo")
      seq_mean_token_sum:      Σ_i (Σ_t l·m) / B                (Dr.GRPO as the ZAYA1 report words it)
      seq_mean_token_mean:     Σ_i (Σ_t l·m / Σ_t m) / B        (GRPO; TRL "grpo")
      seq_mean_token_sum_norm: Σ l·m / (B · L_norm)             (TRL "dr_grpo", L_norm = max completion length)
    """
    masked = per_token * mask
    seqs = float(per_token.shape[0]) if num_seqs is None else num_seqs
    if mode == "token_mean":
        tokens = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=masked.dtype)
        return masked.sum() / tokens.clamp(min=1)
    if mode == "seq_mean_token_sum":
        return masked.sum() / seqs
    if mode == "seq_mean_token_mean":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / seqs
    if mode == "seq_mean_token_sum_norm":
        return masked.sum() / (seqs * (norm_length or per_token.shape[1]))
    raise KeyError(f"unknown loss aggregation {mode!r}")


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, estimator: str) -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from tokens sampled from π; d = log π_ref − log π.
    k1 = −d (unbiased, high variance, can be negative), k2 = d²/2, k3 = e^d − d − 1 (unbiased, ≥ 0)."""
    d = ref_logprobs - logprobs
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        return torch.expm1(d) - d
    raise KeyError(f"unknown KL estimator {estimator!r}")


def kl_penalized_rewards(
    rewards: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, coef: float, estimator: str = "k1"
) -> Tensor:
    """KL as a reward penalty: r − coef · Σ_t KL_t over each completion (call before computing advantages)."""
    return rewards - coef * (kl_estimate(logprobs, ref_logprobs, estimator) * mask).sum(-1)


def tis_weights(old_logprobs: Tensor, behaviour_logprobs: Tensor, cap: float) -> Tensor:
    """Truncated importance weights min(π_old/μ, C) correcting for the rollout engine's sampling policy μ."""
    return torch.exp(old_logprobs - behaviour_logprobs).clamp(max=cap).detach()


def masked_mean(x: Tensor, mask: Tensor) -> float:
    return float((x.float() * mask).sum() / mask.sum().clamp(min=1))


def compute_policy_loss(
    name: str,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    params: LossParams = LossParams(),
    aggregation: str = "token_mean",
    num_seqs: float | None = None,
    num_tokens: float | None = None,
    norm_length: int | None = None,
    behaviour_logprobs: Tensor | None = None,
    tis_cap: float = 0.0,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The scalar loss to backpropagate and its diagnostics (masked token means)."""
    if name not in POLICY_LOSS_REGISTRY:
        raise KeyError(f"unknown policy loss {name!r}; known: {', '.join(sorted(POLICY_LOSS_REGISTRY))}")
    mask = mask.to(logprobs.dtype)
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    per_token, flags = POLICY_LOSS_REGISTRY[name](logprobs, old_logprobs.detach(), advantages, mask, params)
    metrics = {key: masked_mean(flag, mask) for key, flag in flags.items()}
    if behaviour_logprobs is not None:
        # KL(μ‖π) from tokens drawn from μ: k3 with log-ratio log π − log μ
        metrics["kl_behaviour"] = masked_mean(kl_estimate(behaviour_logprobs, logprobs.detach(), "k3"), mask)
        if tis_cap > 0:
            weights = tis_weights(old_logprobs, behaviour_logprobs, tis_cap)
            per_token = per_token * weights
            metrics["tis_weight"] = masked_mean(weights, mask)
            metrics["tis_capped_frac"] = masked_mean(weights >= tis_cap, mask)
    if kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs")
        kl = kl_estimate(logprobs, ref_logprobs, kl_estimator)
        per_token = per_token + kl_coef * kl
        metrics["kl_ref"] = masked_mean(kl.detach(), mask)
    loss = aggregate(per_token, mask, aggregation, num_seqs=num_seqs, num_tokens=num_tokens, norm_length=norm_length)
    log_ratio = (logprobs - old_logprobs).detach()
    scored = mask > 0
    metrics["ratio_mean"] = masked_mean(torch.exp(log_ratio), mask)
    metrics["ratio_max"] = float(torch.exp(log_ratio[scored]).max()) if scored.any() else 1.0
    metrics["ratio_min"] = float(torch.exp(log_ratio[scored]).min()) if scored.any() else 1.0
    if entropy is not None:
        metrics["entropy"] = masked_mean(entropy, mask)
    return loss, metrics
