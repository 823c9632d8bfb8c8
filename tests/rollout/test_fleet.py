"""The Ray fleet: ordered rollouts from both workers, weight sync, a worker killed mid-batch, RSA on Ray.

The fleet is shared by the module (starting workers costs seconds), so each test first puts it in the state
it needs (weights, version) and reads worker incarnations instead of assuming them: any order works.
"""

from __future__ import annotations

import os

import pytest
import ray
import torch

from posttrain.errors import UserError
from posttrain.rollout.config import RolloutConfig, RSAConfig
from posttrain.rollout.fleet import RolloutFleet
from posttrain.rollout.types import Request, SamplingParams
from tests.rollout.oracles import teacher_forced_logprobs

PARAMS = SamplingParams(max_new_tokens=10)


@pytest.fixture(scope="module")
def fleet(ray_session):
    fleet = RolloutFleet("zaya-tiny", RolloutConfig(num_workers=2, batch_size=2), device="cpu")
    yield fleet
    fleet.shutdown()


def requests(count, prefix="r"):
    return [
        Request(
            id=f"{prefix}{i}", messages=[{"role": "user", "content": f"What is {i}+{i}?"}], group=i // 2, params=PARAMS
        )
        for i in range(count)
    ]


def assert_matches(model, rollouts):
    for rollout in rollouts:
        expected = teacher_forced_logprobs(model, rollout.prompt_ids, rollout.completion_ids)
        assert torch.allclose(torch.tensor(rollout.logprobs), expected, atol=1e-4), rollout.worker_id


def test_generate_returns_each_request_once_in_order_from_both_workers(fleet, tiny):
    fleet.sync_weights(tiny[0].state_dict(), version=0)  # the seed's weights, whatever ran before
    rollouts = fleet.generate(requests(6))
    assert [r.request_id for r in rollouts] == [f"r{i}" for i in range(6)]
    assert [r.group for r in rollouts] == [0, 0, 1, 1, 2, 2]
    assert {r.worker_id for r in rollouts} == {w["worker_id"] for w in fleet.info()}
    assert {r.worker_id.split(".")[0] for r in rollouts} == {"w0", "w1"}
    assert all(r.policy_version == 0 and 1 <= len(r.completion_ids) <= 10 for r in rollouts)
    assert_matches(tiny[0], rollouts)  # workers hold exactly the seed's weights
    with pytest.raises(ValueError, match="unique"):
        fleet.generate(requests(2) + requests(1))


def test_workers_run_at_the_drivers_priority(fleet):
    """Ray would start them at nice 15, where a busy machine gives a worker a fraction of the driver's share."""
    for worker in fleet.info():
        assert os.getpriority(os.PRIO_PROCESS, worker["pid"]) == os.getpriority(os.PRIO_PROCESS, 0)


@pytest.fixture(scope="module")
def perturbed(tiny):
    model = type(tiny[0])(tiny[0].config).eval()
    model.load_state_dict({k: v + 0.02 * torch.randn_like(v) for k, v in tiny[0].state_dict().items()})
    return model


def test_weight_sync_reaches_every_worker_and_stamps_the_version(fleet, perturbed):
    fleet.sync_weights(perturbed.state_dict(), version=5)
    rollouts = fleet.generate(requests(4))
    assert {r.policy_version for r in rollouts} == {5}
    assert_matches(perturbed, rollouts)


def test_a_worker_killed_mid_batch_is_replaced_resynced_and_nothing_is_lost(fleet, perturbed):
    fleet.sync_weights(perturbed.state_dict(), version=6)
    restarts, killed = fleet.restarts, []
    slot0 = fleet.info()[0]["worker_id"]  # w0.<incarnation>
    successor = f"w0.{int(slot0.split('.')[1]) + 1}"

    def kill_first_dispatch_to_slot_0(slot, chunk):
        if slot == 0 and not killed:
            killed.append([r.id for r in chunk])
            ray.kill(fleet.workers[0], no_restart=True)  # its chunk is in flight, not finished

    rollouts = fleet.generate(requests(8, prefix="k"), on_dispatch=kill_first_dispatch_to_slot_0)
    assert fleet.restarts == restarts + 1
    assert sorted(r.request_id for r in rollouts) == sorted(f"k{i}" for i in range(8))
    assert len({r.request_id for r in rollouts}) == 8
    replaced = [r for r in rollouts if r.worker_id.startswith("w0.")]
    assert killed[0] == ["k0", "k1"] and replaced and all(r.worker_id == successor for r in replaced)
    assert {r.policy_version for r in rollouts} == {6}
    assert_matches(perturbed, rollouts)  # the replacement serves the synced weights, not the seed's


def test_a_worker_that_dies_during_weight_sync_is_replaced_and_serves_the_new_version(fleet, tiny, perturbed):
    """The replacement's weight load is awaited: the next rollouts come from version v's weights (teacher-forced
    check against v's model), stamped v, and the death counts as a restart."""
    fleet.sync_weights(tiny[0].state_dict(), version=7)
    restarts = fleet.restarts
    ray.kill(fleet.workers[1], no_restart=True)  # dead before the sync reaches it
    fleet.sync_weights(perturbed.state_dict(), version=8)
    assert fleet.restarts == restarts + 1
    rollouts = fleet.generate(requests(8, prefix="s"))
    assert {r.policy_version for r in rollouts} == {8} and {r.worker_id[:2] for r in rollouts} == {"w0", "w1"}
    assert_matches(perturbed, rollouts)


def test_markovian_rsa_runs_on_the_fleet_with_bounded_context(fleet):
    cfg = RSAConfig(N=3, C=2, T=1, beta=6, tau=3, aggregation_template="{problem}\n{candidates}Merge:")
    fleet.max_context_seen(reset=True)
    (tree,) = fleet.run_rsa(["What is 1+1?"], cfg)
    assert len(tree.rounds) == 2 and len(tree.final) == 3
    assert all(c.rollout.policy_version == fleet.version for layer in tree.rounds for c in layer)
    longest_prompt = max(len(c.rollout.prompt_ids) for c in tree.final)
    assert fleet.max_context_seen() <= longest_prompt + cfg.beta


def test_workers_that_cannot_be_placed_fail_before_any_actor_starts(ray_session):
    with pytest.raises(UserError, match="rollout workers need"):
        RolloutFleet("zaya-tiny", RolloutConfig(num_workers=64), device="cpu")
