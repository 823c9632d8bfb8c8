"""The recipe's trust region and KL terms as the learner runs them, against oracles computed here."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from posttrain.config.schema import LoraConfig
from posttrain.models import load_model
from posttrain.models.lora import apply_lora
from posttrain.rl.batch import TrainBatch
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from posttrain.rl.losses import compute_policy_loss
from tests.rl.test_learner import bandit_batch, sampled_by


def teacher_forced(model, batch: TrainBatch) -> torch.Tensor:
    """log π of every token from one plain forward and log_softmax (independent of posttrain.rl.logprobs)."""
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    picked = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    return torch.cat([torch.zeros(batch.size, 1), picked], 1) * batch.completion_mask


# (π, μ, A) per token, δ = 0.1, worked by hand from the binary-TV rule:
# keep when A > 0 and π − μ <= δ, or A <= 0 and μ − π <= δ; d loss / d log π = −A · min(π/μ, 20) · keep
HAND_TABLE = [
    # π      μ       A     kept   d loss / d log π
    (0.50, 0.45, +1.0, True, -0.50 / 0.45),
    (0.60, 0.45, +1.0, False, 0.0),  # rose by 0.15 > δ while being pushed up
    (0.30, 0.45, +1.0, True, -0.30 / 0.45),  # fell: pushing it up is always allowed
    (0.30, 0.45, -1.0, False, 0.0),  # fell by 0.15 > δ while being pushed down
    (0.40, 0.45, -1.0, True, +0.40 / 0.45),
    (0.90, 0.45, -1.0, True, +2.0),  # rose: pushing it down is always allowed
    (0.004, 0.0001, +1.0, True, -20.0),  # ratio 40 but a move of 0.0039 < δ: kept, coefficient capped at 20
]


def test_dppo_gradient_and_mask_match_a_hand_worked_table():
    pi = torch.tensor([[row[0] for row in HAND_TABLE]], dtype=torch.float64)
    mu = torch.tensor([[row[1] for row in HAND_TABLE]], dtype=torch.float64)
    adv = torch.tensor([[row[2] for row in HAND_TABLE]], dtype=torch.float64)
    logpi = pi.log().requires_grad_()
    loss, metrics = compute_policy_loss(
        "dppo", logpi, mu.log(), adv, torch.ones_like(pi), aggregation="seq_mean_token_sum"
    )
    loss.backward()
    assert logpi.grad[0].tolist() == pytest.approx([row[4] for row in HAND_TABLE], rel=1e-9)
    assert metrics["clip_frac"] == pytest.approx(sum(not row[3] for row in HAND_TABLE) / len(HAND_TABLE))


def test_dppo_under_the_defaults_masks_against_the_rollout_policys_log_probs():
    """Stale behaviour log-probs μ (a rollout from older weights): with the default config the mask fires on
    exactly the tokens the rule picks from π (a plain forward here) and μ. With anchors recomputed from the
    learner's own weights it never could: the ratio would be 1."""
    model, tok = load_model("zaya-tiny", seed=1)
    batch = bandit_batch(tok)
    pi = teacher_forced(model, batch)
    gen = torch.Generator().manual_seed(0)
    stale = (pi.exp() + 0.3 * (torch.rand(pi.shape, generator=gen) - 0.5)).clamp(1e-4, 0.999).log()
    batch = TrainBatch(**{**vars(batch), "behaviour_logprobs": stale * batch.completion_mask})
    cfg = RLConfig(optimizer="adamw", lr=1e-3)
    assert (cfg.loss, cfg.old_logprobs) == ("dppo", "behaviour")
    metrics = Learner(copy.deepcopy(model), cfg, device="cpu").step(batch)
    adv = batch.token_advantages()
    shift = pi.exp() - stale.exp()
    masked = torch.where(adv > 0, shift > 0.1, -shift > 0.1) & (batch.completion_mask > 0)
    expected = float(masked.sum() / batch.completion_mask.sum())
    assert expected > 0.02
    assert metrics["clip_frac"] == pytest.approx(expected, abs=1e-6)


def test_kl_behaviour_metric_estimates_kl_of_the_rollout_policy_to_the_learner():
    """Tokens drawn from μ; the metric's average must approach KL(μ‖π) (computed exactly here), not KL(π‖μ)."""
    mu = torch.tensor([0.8, 0.15, 0.05], dtype=torch.float64)
    pi = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    exact_mu_pi = float((mu * (mu / pi).log()).sum())
    exact_pi_mu = float((pi * (pi / mu).log()).sum())
    tokens = torch.multinomial(mu, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logpi, logmu = pi.log()[tokens][None], mu.log()[tokens][None]
    _, metrics = compute_policy_loss(
        "ppo_clip", logpi, logpi, torch.zeros_like(logpi), torch.ones_like(logpi), behaviour_logprobs=logmu
    )
    assert abs(exact_mu_pi - exact_pi_mu) > 0.15
    assert metrics["kl_behaviour"] == pytest.approx(exact_mu_pi, rel=0.03)


def test_kl_in_reward_subtracts_the_summed_k1_kl_before_the_advantages():
    model, tok = load_model("llama-tiny", seed=3)
    reference = copy.deepcopy(model)
    with torch.no_grad():  # move the policy away from the reference so the KL is not zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = sampled_by(model, bandit_batch(tok))
    batch = TrainBatch(**{**vars(batch), "advantages": None})
    cfg = RLConfig(advantage="rloo", loss="ppo_clip", kl_coef=0.5, kl_in_reward=True, kl_estimator="k1", lr=1e-9)
    learner = Learner(copy.deepcopy(model), cfg, ref_model=reference, device="cpu")
    prepared = learner.prepare(batch)
    kl = ((teacher_forced(model, batch) - teacher_forced(reference, batch)) * batch.completion_mask).sum(-1)
    rewards = batch.rewards - 0.5 * kl
    expected = []
    for i in range(batch.size):  # RLOO: reward minus the mean of the others in the group
        others = [float(rewards[j]) for j in range(batch.size) if batch.group_ids[j] == batch.group_ids[i] and j != i]
        expected.append(float(rewards[i]) - sum(others) / len(others))
    assert float(kl.abs().max()) > 0.01
    torch.testing.assert_close(prepared.advantages.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-4,
                               rtol=0)  # fmt: skip


def test_a_lora_policys_reference_is_its_base_with_adapters_disabled():
    model, tok = load_model("zaya-tiny", seed=2)
    base_logps = teacher_forced(model, bandit_batch(tok))
    policy = apply_lora(copy.deepcopy(model), LoraConfig(r=4), seed=0)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()  # the adapters now change the output
    learner = Learner(policy, RLConfig(kl_metric=True, optimizer="adamw"), device="cpu")
    assert learner.ref_model is None  # no copy of the model
    batch = sampled_by(policy, bandit_batch(tok))
    reference = learner.prepare(batch).ref_logprobs * batch.completion_mask
    torch.testing.assert_close(reference, base_logps, atol=1e-5, rtol=0)
    metrics = learner.step(batch)
    assert metrics["kl_start"] > 0 and math.isfinite(metrics["kl_start"])


def test_a_kl_term_without_a_reference_is_refused():
    model, _ = load_model("llama-tiny")
    with pytest.raises(ValueError, match="needs a reference model"):
        Learner(model, RLConfig(kl_coef=0.1), device="cpu")
