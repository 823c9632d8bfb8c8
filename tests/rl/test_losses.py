"""Policy losses, aggregation, KL estimators and TIS against scalar re-derivations in plain Python."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.rl.losses import (
    LossParams,
    aggregate,
    compute_policy_loss,
    kl_estimate,
    kl_penalized_rewards,
    tis_weights,
)

P = LossParams(epsilon_low=0.2, epsilon_high=0.28, dppo_delta=0.1)


def test_ppo_clip_per_token_matches_scalar_formula():
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    new = old + torch.tensor([[0.4, -0.4, 0.1, 0.3]])
    adv = torch.tensor([[1.0, -1.0, 2.0, -0.5]])
    mask = torch.ones(1, 4)
    loss, m = compute_policy_loss("ppo_clip", new, old, adv, mask, params=P, aggregation="token_mean")
    expected = []
    for n, o, a in zip(new[0].tolist(), old[0].tolist(), adv[0].tolist(), strict=True):
        r = math.exp(n - o)
        expected.append(-min(r * a, min(max(r, 0.8), 1.28) * a))
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-6)
    # token 0: r = e^.4 = 1.49 > 1.28 with A > 0 -> high clip; token 1: r = e^-.4 = .67 < .8 with A < 0 -> low clip
    assert m["clip_frac_high"] == pytest.approx(0.25) and m["clip_frac_low"] == pytest.approx(0.25)


def test_dppo_masks_only_tokens_whose_probability_moved_past_delta_in_the_advantage_direction():
    old_p = torch.tensor([[0.50, 0.50, 0.50, 0.50, 0.001, 0.30]])
    new_p = torch.tensor([[0.65, 0.55, 0.35, 0.65, 0.050, 0.15]])
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0, 1.0, 1.0]])
    # token0: +0.15 > δ with A>0 -> masked; token1: +0.05 kept; token2: -0.15 with A<0 -> masked;
    # token3: rises with A<0 -> kept; token4: ratio 50 but only +0.049 -> kept (ratio cap 20 in the value);
    # token5: falls with A>0 -> kept
    new = new_p.log().requires_grad_()
    mask = torch.ones(1, 6)
    loss, m = compute_policy_loss("dppo", new, old_p.log(), adv, mask, params=P, aggregation="seq_mean_token_sum")
    keep = [0, 1, 0, 1, 1, 1]
    ratios = (new_p / old_p)[0].tolist()
    expected = sum(-a * min(r, 20.0) * k for a, r, k in zip(adv[0].tolist(), ratios, keep, strict=True))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert m["clip_frac"] == pytest.approx(2 / 6)
    assert m["clip_frac_high"] == pytest.approx(1 / 6) and m["clip_frac_low"] == pytest.approx(1 / 6)
    loss.backward()
    grad = new.grad[0].tolist()
    assert grad[0] == 0 and grad[2] == 0  # masked tokens get no gradient
    assert grad[1] == pytest.approx(-1.0 * ratios[1], rel=1e-5)  # d(-A r)/d log π = -A r
    assert grad[4] == pytest.approx(-1.0 * 20.0, rel=1e-5)  # ratio coefficient capped at 20


def test_gspo_uses_geometric_mean_sequence_ratio():
    old = torch.log(torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.2, 0.2]]))
    new = torch.log(torch.tensor([[0.6, 0.5, 0.3], [0.2, 0.3, 0.9]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    params = LossParams(epsilon_low=0.1, epsilon_high=0.1)
    loss, _ = compute_policy_loss("gspo", new, old, adv, mask, params=params, aggregation="seq_mean_token_mean")
    s0 = (0.6 / 0.5 * 0.5 / 0.4 * 1.0) ** (1 / 3)
    s1 = (1.0 * 0.3 / 0.2) ** (1 / 2)  # the masked third token does not count
    per_seq = [-min(s0 * 1.0, min(max(s0, 0.9), 1.1) * 1.0), -min(s1 * -2.0, min(max(s1, 0.9), 1.1) * -2.0)]
    assert loss.item() == pytest.approx(sum(per_seq) / 2, rel=1e-6)


LOSS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token_mean", (1 + 2 + 5 + 6 + 7) / 5),
        ("seq_mean_token_sum", ((1 + 2) + (5 + 6 + 7)) / 2),
        ("seq_mean_token_mean", ((1 + 2) / 2 + (5 + 6 + 7) / 3) / 2),
        ("seq_mean_token_sum_norm", (1 + 2 + 5 + 6 + 7) / (2 * 10)),
    ],
)
def test_aggregation_modes(mode, expected):
    assert aggregate(LOSS, MASK, mode, norm_length=10).item() == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_sum", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batch_losses_with_global_denominators_sum_to_the_full_loss(mode):
    full = aggregate(LOSS, MASK, mode, norm_length=10)
    parts = sum(
        aggregate(LOSS[i : i + 1], MASK[i : i + 1], mode, num_seqs=2, num_tokens=float(MASK.sum()), norm_length=10)
        for i in range(2)
    )
    assert parts.item() == pytest.approx(full.item())


def test_kl_estimators_average_to_the_exact_kl_under_the_sampling_policy():
    pi = torch.tensor([0.5, 0.3, 0.15, 0.05])
    ref = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = float((pi * (pi / ref).log()).sum())
    for estimator in ("k1", "k3"):  # unbiased: E_{x~π}[k(x)] = KL(π‖ref)
        values = kl_estimate(pi.log(), ref.log(), estimator)
        assert float((pi * values).sum()) == pytest.approx(exact, rel=1e-5)
    assert (kl_estimate(pi.log(), ref.log(), "k3") >= 0).all()
    k2 = kl_estimate(pi.log(), ref.log(), "k2")
    assert torch.allclose(k2, 0.5 * (pi.log() - ref.log()) ** 2)


def test_kl_in_loss_and_as_reward_penalty():
    logps = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    mask = torch.tensor([[1.0, 1.0]])
    adv = torch.zeros(1)
    loss, m = compute_policy_loss(
        "ppo_clip", logps, logps, adv, mask, ref_logprobs=ref, kl_coef=0.5, kl_estimator="k1", aggregation="token_mean"
    )
    assert loss.item() == pytest.approx(0.5 * ((-1.0 + 1.5) + (-2.0 + 1.0)) / 2)
    assert m["kl_ref"] == pytest.approx(-0.25)
    penalised = kl_penalized_rewards(torch.tensor([1.0]), logps, ref, mask, 0.5, "k1")
    assert penalised.item() == pytest.approx(1.0 - 0.5 * (0.5 - 1.0))
    with pytest.raises(ValueError, match="ref_logprobs"):
        compute_policy_loss("ppo_clip", logps, logps, adv, mask, kl_coef=0.1)


def test_truncated_importance_weights_scale_the_per_token_loss():
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    behaviour = torch.tensor([[-1.0, -2.0, -0.5]])  # weights e^0, e^1 -> capped at 2, e^-0.5
    w = tis_weights(old, behaviour, 2.0)
    assert w.tolist()[0] == pytest.approx([1.0, 2.0, math.exp(-0.5)])
    adv = torch.ones(1)
    mask = torch.ones(1, 3)
    base, _ = compute_policy_loss("ppo_clip", old, old, adv, mask, aggregation="seq_mean_token_sum")
    weighted, m = compute_policy_loss(
        "ppo_clip", old, old, adv, mask, aggregation="seq_mean_token_sum", behaviour_logprobs=behaviour, tis_cap=2.0
    )
    assert base.item() == pytest.approx(-3.0)
    assert weighted.item() == pytest.approx(-(1.0 + 2.0 + math.exp(-0.5)))
    assert m["tis_capped_frac"] == pytest.approx(1 / 3)
    off, _ = compute_policy_loss(
        "ppo_clip", old, old, adv, mask, aggregation="seq_mean_token_sum", behaviour_logprobs=behaviour, tis_cap=0.0
    )
    assert off.item() == pytest.approx(-3.0)


def test_unknown_names_fail_loudly():
    x = torch.zeros(1, 2)
    with pytest.raises(KeyError, match="unknown policy loss"):
        compute_policy_loss("nope", x, x, torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(KeyError, match="aggregation"):
        aggregate(x, torch.ones(1, 2), "nope")
