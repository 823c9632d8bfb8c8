"""`<stage>.key=value` overrides reach only that stage; everything else reaches every stage."""

from __future__ import annotations

from posttrain.runner import scoped_overrides

GIVEN = ["seed=3", "sft.trainer.max_steps=30", "rlve.trainer.max_steps=5", "trainer.lr=0.1", "mathcode.seed=9"]


def test_a_stage_gets_the_plain_overrides_then_its_own_without_prefix():
    assert scoped_overrides("sft", GIVEN) == ["seed=3", "trainer.lr=0.1", "trainer.max_steps=30"]
    assert scoped_overrides("rlve", GIVEN) == ["seed=3", "trainer.lr=0.1", "trainer.max_steps=5"]


def test_config_keys_that_are_not_stage_names_are_never_mistaken_for_a_scope():
    plain = ["rl.lr=1", "rollout.strategy=single", "rsa.N=4", "run.root=/tmp/x"]
    assert scoped_overrides("rlve", plain) == plain
