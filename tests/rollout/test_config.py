"""The rollout config sections: range checks fail as UserError before any work, defaults compose."""

from __future__ import annotations

import pytest

from posttrain.config import compose, to_object
from posttrain.errors import UserError

RSA_LAYER = ["commands/rsa.yaml"]


def rsa_config(*overrides: str):
    return to_object(compose("rsa", list(overrides), layer_files=RSA_LAYER))


def test_defaults_are_the_paper_settings_and_the_command_layer_is_small():
    paper = to_object(compose("sft", []))
    assert (paper.rsa.N, paper.rsa.C, paper.rsa.T) == (16, 4, 2)
    assert paper.rsa.tau <= paper.rsa.beta / 2
    assert (paper.rsa.final_temperature, paper.rsa.final_top_p) == (0.6, 0.95)
    assert paper.ray.address is None and paper.rollout.engine == "hf" and paper.rollout.weight_sync == "object_store"
    small = rsa_config()
    assert small.model.path == "zaya-tiny"
    assert small.rsa.N < paper.rsa.N and small.rsa.beta < paper.rsa.beta


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["rsa.N=4", "rsa.C=5"], "rsa.C must be in [1, rsa.N=4]"),
        (["rsa.C=0"], "rsa.C must be in"),
        (["rsa.beta=8", "rsa.tau=9"], "rsa.tau must be in [1, rsa.beta=8]"),
        (["rsa.beta=0"], "rsa.beta must be >= 1"),
        (["rsa.T=-1"], "rsa.T must be >= 0"),
        (["rsa.final_top_p=0"], "rsa.final_top_p"),
        (["rsa.aggregation_template=no placeholders"], "{problem}"),
        (["rollout.num_workers=0"], "rollout.num_workers"),
        (["rollout.weight_sync=nccl"], "rollout.weight_sync must be one of object_store, collective"),
        (["rollout.strategy=beam"], "rollout.strategy"),
        (["rollout.top_p=1.5"], "rollout.top_p"),
        (["ray.placement_strategy=RANDOM"], "ray.placement_strategy"),
    ],
)
def test_bad_values_raise_user_errors_naming_the_key(override, message):
    with pytest.raises(UserError, match=None) as caught:
        rsa_config(*override)
    assert message in str(caught.value)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(UserError, match=r"did you mean 'rsa.beta'"):
        rsa_config("rsa.betta=3")


def test_special_cases_are_valid_configs():
    assert rsa_config("rsa.T=0").rsa.T == 0
    assert rsa_config("rsa.C=1").rsa.C == 1
    full = rsa_config("rsa.beta=16", "rsa.tau=16")
    assert full.rsa.tau == full.rsa.beta
