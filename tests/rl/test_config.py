"""RLConfig defaults follow the ZAYA1 recipe, bad values fail as UserError, and `rl.*` keys compose."""

from __future__ import annotations

import re

import pytest

from posttrain.config.load import compose, to_object
from posttrain.errors import UserError
from posttrain.rl.config import RLConfig


def test_defaults_are_the_zaya1_recipe():
    cfg = RLConfig()
    assert (cfg.advantage, cfg.loss, cfg.dppo_delta, cfg.aggregation) == ("maxrl", "dppo", 0.1, "seq_mean_token_sum")
    assert cfg.kl_coef == 0.0
    assert (cfg.optimizer, cfg.muon_momentum) == ("muon", 0.0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("loss", "ppo", "rl.loss must be one of"),
        ("advantage", "gae", "rl.advantage must be one of"),
        ("aggregation", "mean", "rl.aggregation must be one of"),
        ("dppo_delta", 0.0, "rl.dppo_delta"),
        ("tis_cap", 0.5, "rl.tis_cap"),
        ("minibatches", 0, "rl.minibatches"),
        ("muon_momentum", 1.0, "rl.muon_momentum"),
        ("temperature", 0.0, "rl.temperature"),
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


def test_learner_temperature_follows_the_fleets_unless_set():
    assert to_object(compose("rlve", ["rollout.temperature=0.7"])).rl.temperature == 0.7
    assert to_object(compose("rlve", ["rollout.temperature=0.7", "rl.temperature=0.5"])).rl.temperature == 0.5
    with pytest.raises(UserError, match=re.escape("rl.temperature must be > 0 (it follows rollout.temperature")):
        to_object(compose("rlve", ["rollout.temperature=0"]))  # greedy rollouts give a group nothing to compare
