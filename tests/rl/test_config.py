"""RLConfig defaults follow the ZAYA1 recipe, bad values fail as UserError, and `rl.*` keys compose."""

from __future__ import annotations

import re

import pytest

from posttrain.config.load import compose, to_object
from posttrain.errors import UserError
from posttrain.rl.advantages import ADVANTAGE_REGISTRY, register_advantage
from posttrain.rl.config import RLConfig, check_registered
from posttrain.rl.losses import POLICY_LOSS_REGISTRY, register_policy_loss


def test_defaults_are_the_zaya1_recipe():
    cfg = RLConfig()
    assert (cfg.advantage, cfg.loss, cfg.dppo_delta, cfg.aggregation) == ("maxrl", "dppo", 0.1, "seq_mean_token_sum")
    assert cfg.old_logprobs == "behaviour"  # DPPO's trust region is measured against the rollout policy
    assert cfg.kl_coef == 0.0
    assert (cfg.optimizer, cfg.muon_momentum) == ("muon", 0.0)


def test_names_are_checked_against_the_registries_so_a_users_registration_is_accepted():
    with pytest.raises(UserError, match=r"rl.loss must be one of .*cispo.*got 'ppo'"):
        check_registered(RLConfig(loss="ppo"))
    with pytest.raises(UserError, match=r"rl.advantage must be one of"):
        check_registered(RLConfig(advantage="gae"))

    @register_advantage("test_centred")
    def centred(rewards, group_ids):
        return rewards - rewards.mean()

    @register_policy_loss("test_reinforce")
    def reinforce(logprobs, old, adv, mask, params):
        return -adv * logprobs, {}

    try:
        check_registered(RLConfig(advantage="test_centred", loss="test_reinforce"))
    finally:
        del ADVANTAGE_REGISTRY["test_centred"], POLICY_LOSS_REGISTRY["test_reinforce"]


def test_dppo_with_recomputed_anchors_is_refused():
    with pytest.raises(UserError, match=r"rl.loss=dppo measures its trust region against the rollout policy"):
        RLConfig(loss="dppo", old_logprobs="recompute")
    RLConfig(loss="ppo_clip", old_logprobs="recompute")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aggregation", "mean", "rl.aggregation must be one of"),
        ("dppo_delta", 0.0, "rl.dppo_delta"),
        ("tis_cap", 0.5, "rl.tis_cap"),
        ("minibatches", 0, "rl.minibatches"),
        ("muon_momentum", 1.0, "rl.muon_momentum"),
        ("cispo_cap", 0.0, "rl.cispo_cap"),
        ("kl_estimator", "k4", "rl.kl_estimator"),
    ],
)
def test_bad_values_raise_user_error(field, value, message):
    with pytest.raises(UserError, match=message):
        RLConfig(**{field: value})


def test_rl_section_is_mounted_in_the_run_config():
    cfg = to_object(compose("sft", ["rl.loss=gspo", "rl.epsilon_low=3e-4", "rl.minibatches=4"]))
    assert (cfg.rl.loss, cfg.rl.epsilon_low, cfg.rl.minibatches) == ("gspo", 3e-4, 4)
    with pytest.raises(UserError, match=re.escape("did you mean 'rl.loss'")):
        compose("sft", ["rl.los=gspo"])
    with pytest.raises(UserError, match=re.escape("rl.ppo_epochs")):
        to_object(compose("sft", ["rl.ppo_epochs=0"]))
