"""rollout.weight_sync=collective: a gloo broadcast from this process to the Ray workers.

The oracle is the state dict that was synced: every worker's engine must hold it bit for bit (read inside the
actor with Ray's `__ray_call__`), stamp its rollouts with the synced version, and so must a worker that replaced
one killed during a sync. The fleet is shared by the module; each test first syncs the weights it checks.
"""

from __future__ import annotations

import pytest
import ray
import torch

from posttrain.rollout.config import RolloutConfig
from posttrain.rollout.fleet import RolloutFleet
from posttrain.rollout.types import Request, SamplingParams
from posttrain.rollout.weight_sync import Manifest, PackedWeights


@pytest.fixture(scope="module")
def fleet(ray_session):
    cfg = RolloutConfig(num_workers=2, batch_size=2, weight_sync="collective")
    fleet = RolloutFleet("zaya-tiny", cfg, device="cpu")
    yield fleet
    fleet.shutdown()


def perturbed(tiny, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = tiny[0].state_dict()
    new = {name: t + 0.01 * torch.randn(t.shape, generator=gen) if t.is_floating_point() else t.clone()
           for name, t in state.items() if name != "lm_head.weight"}  # fmt: skip
    new["lm_head.weight"] = new["model.embed_tokens.weight"]  # tied, as in the model
    return new


def engine_weights(worker) -> dict[str, torch.Tensor]:
    return ray.get(worker.__ray_call__.remote(lambda self: dict(self.engine.model.state_dict())))


def assert_every_worker_holds(fleet, state, version):
    for worker in fleet.workers:
        held = engine_weights(worker)
        assert held.keys() == state.keys()
        for name, tensor in state.items():
            assert torch.equal(held[name], tensor), name  # bit for bit
    assert [info["version"] for info in fleet.info()] == [version] * len(fleet.workers)


def requests(count, prefix):
    params = SamplingParams(max_new_tokens=6)
    return [Request(id=f"{prefix}{i}", prompt_ids=(5, 6 + i), group=i, params=params, seed=i) for i in range(count)]


def test_manifest_sends_tied_weights_once(tiny):
    state = tiny[0].state_dict()
    manifest = Manifest.of(state)
    assert manifest.aliases == {"lm_head.weight": "model.embed_tokens.weight"}
    embed = state["model.embed_tokens.weight"]
    assert manifest.nbytes == sum(t.numel() * t.element_size() for t in state.values()) - embed.numel() * 4
    assert all(len({manifest.entries[i][2] for i in run}) == 1 for run in manifest.buckets())


def test_packed_weights_round_trip_bit_for_bit_with_mixed_dtypes_and_tied_weights(ray_session, tiny, monkeypatch):
    import posttrain.rollout.weight_sync as weight_sync

    state = dict(tiny[0].state_dict())
    state["extra.half"] = torch.linspace(-3, 3, 7, dtype=torch.bfloat16)  # no numpy dtype: travels as bytes
    state["extra.steps"] = torch.arange(5)  # int64 between float runs
    monkeypatch.setattr(weight_sync, "BUCKET_BYTES", 4096)  # many buckets
    packed = PackedWeights.of(state)
    assert len(packed.buffers) > 3
    unpacked = ray.get(ray.put(packed)).state_dict()  # through Ray's store, as a worker receives it
    assert unpacked.keys() == state.keys()
    for name, tensor in state.items():
        assert unpacked[name].dtype == tensor.dtype and torch.equal(unpacked[name], tensor), name
    assert unpacked["lm_head.weight"].data_ptr() == unpacked["model.embed_tokens.weight"].data_ptr()


def test_collective_sync_gives_every_worker_the_learners_weights_bit_for_bit(fleet, tiny):
    first = perturbed(tiny, 1)
    fleet.sync_weights(first, version=3)
    assert_every_worker_holds(fleet, first, 3)
    generation = fleet._sync.generation
    second = perturbed(tiny, 2)
    fleet.sync_weights(second, version=4)
    assert_every_worker_holds(fleet, second, 4)
    assert fleet._sync.generation == generation  # the group is kept between syncs
    rollouts = fleet.generate(requests(4, "v"))
    assert {r.policy_version for r in rollouts} == {4}


def test_a_worker_killed_during_a_collective_sync_is_replaced_and_receives_the_weights(fleet, tiny):
    fleet.sync_weights(perturbed(tiny, 3), version=5)
    restarts, generation, killed = fleet.restarts, fleet._sync.generation, []

    def kill_slot_1_once(slot):
        if slot == 1 and not killed:
            killed.append(fleet.workers[1])
            ray.kill(fleet.workers[1], no_restart=True)  # its receive was submitted, the broadcast not begun

    state = perturbed(tiny, 4)
    fleet.sync_weights(state, version=6, on_submit=kill_slot_1_once)
    assert killed and fleet.workers[1] is not killed[0] and fleet.restarts == restarts + 1
    assert fleet._sync.generation > generation  # a new group with the replacement in it
    assert_every_worker_holds(fleet, state, 6)


def test_a_worker_dead_before_a_sync_breaks_the_broadcast_and_is_replaced(fleet, tiny):
    fleet.sync_weights(perturbed(tiny, 5), version=7)  # a formed group, which still lists the worker killed next
    restarts = fleet.restarts
    ray.kill(fleet.workers[0], no_restart=True)
    state = perturbed(tiny, 6)
    fleet.sync_weights(state, version=8)
    assert fleet.restarts == restarts + 1
    assert_every_worker_holds(fleet, state, 8)


def test_a_worker_killed_mid_generate_waits_for_the_next_collective_sync(fleet, tiny):
    state = perturbed(tiny, 7)
    fleet.sync_weights(state, version=9)
    killed = []

    def kill_first_dispatch_to_slot_0(slot, chunk):
        if slot == 0 and not killed:
            killed.append(fleet.workers[0])
            ray.kill(fleet.workers[0], no_restart=True)

    rollouts = fleet.generate(requests(6, "g"), on_dispatch=kill_first_dispatch_to_slot_0)
    replacement = fleet.info()[0]["worker_id"]
    assert [r.request_id for r in rollouts] == [f"g{i}" for i in range(6)]
    assert {r.policy_version for r in rollouts} == {9}  # no sample from weights older than the sync
    assert replacement not in {r.worker_id for r in rollouts}  # it holds no weights of version 9 yet
    fleet.sync_weights(state, version=10)
    assert_every_worker_holds(fleet, state, 10)
    assert replacement in {r.worker_id for r in fleet.generate(requests(4, "h"))}
