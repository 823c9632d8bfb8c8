"""The data-parallel learner: 2 gloo replicas in Ray actors update like one process, and checkpoints move
between worker counts.

The oracle is the single-process Learner on the same batch and seed. AdamW is used because its update is
reproducible to float32 rounding; Muon orthogonalises in bf16, so two gradients that differ by summation order
(1e-7) give updates that differ in the bf16 rounding of its Newton-Schulz iterations (docs/rl.md). Adam's step
is blind to the gradient's scale, so the scale is checked separately: `grad_norm` is the norm of the summed
gradient before clipping, and `router/max_load` is computed from the summed router counts.
"""

from __future__ import annotations

from functools import partial

import pytest
import ray
import torch

from posttrain.config.schema import Config, LoraConfig, ModelConfig
from posttrain.errors import UserError
from posttrain.models import load_tokenizer
from posttrain.rl.config import RLConfig
from posttrain.rl.distributed import DistributedLearner, share
from posttrain.rl.stage import build_local_learner, load_policy
from posttrain.rollout.config import RayConfig
from posttrain.rollout.session import init_ray, shutdown_ray
from posttrain.rollout.weight_sync import bucket_indices
from tests.rl.test_learner import bandit_batch

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def ray_session():
    owned = init_ray(RayConfig(num_cpus=4))  # logical CPUs: two 1-CPU replicas, whatever else the box runs
    yield
    if owned:
        shutdown_ray()


@pytest.fixture(scope="module")
def batches():
    tokenizer = load_tokenizer("zaya-tiny")
    return bandit_batch(tokenizer, seed=0), bandit_batch(tokenizer, seed=1)


def config(**rl) -> Config:
    defaults = {"optimizer": "adamw", "lr": 1e-4, "advantage": "grpo", "loss": "ppo_clip",
                "old_logprobs": "recompute", "router_balancing": True, "router_balancing_lr": 0.01}  # fmt: skip
    cfg = Config(stage="rlve", device="cpu", seed=3, model=ModelConfig(path="zaya-tiny"), rl=RLConfig(**defaults | rl))
    cfg.trainer.max_steps = 4
    return cfg


def replicas(cfg: Config, policy=None, workers: int = 2) -> DistributedLearner:
    build = partial(build_local_learner, cfg, policy)
    return DistributedLearner(build, workers, model=load_policy(cfg, policy), sharding=cfg.rl.learner_sharding)


def sharded(**rl) -> Config:
    return config(**rl, learner_workers=2, learner_sharding="fsdp2")


def held_elements(dp: DistributedLearner) -> list[int]:
    """Per replica, the parameter elements it holds (its own shard of a sharded tensor)."""

    def count(replica) -> int:
        params = replica.learner.model.parameters()
        return sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in params)

    return ray.get([r.__ray_call__.remote(count) for r in dp.replicas])


def weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, atol: float = TOLERANCE) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def largest_change(after: dict, before: dict) -> float:
    return max(float((after[k] - before[k]).abs().max()) for k in after if "balancing_biases" not in k)


@pytest.mark.parametrize(
    "rl",
    [
        # uneven shares (minibatches of 3, 2, 3 rows), two micro-batches per share, anchors recomputed up front
        {"minibatches": 3, "grad_accum": 2},
        # one row per minibatch: rank 0's share of every minibatch is empty, rank 1 trains alone
        {"minibatches": 8},
    ],
    ids=["uneven-shares", "empty-shares"],
)
def test_two_gloo_replicas_update_like_one_process(ray_session, batches, rl):
    cfg = config(**rl)
    single = build_local_learner(cfg)
    before = weights(single.model)
    expected = single.step(batches[0])
    with replicas(cfg) as dp:
        got = dp.step(batches[0])
        rank1 = ray.get(dp.replicas[1].model_state.remote())
        after = weights(dp.model)
    assert largest_change(after, before) > 50 * TOLERANCE  # the update is far larger than the tolerance
    assert_same_weights(after, weights(single.model))
    assert_same_weights(rank1, after, atol=0)  # the replicas never drift apart
    assert got["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-5)  # the gradient's scale
    assert got["loss"] == pytest.approx(expected["loss"], abs=1e-6)
    assert got["router/max_load"] == pytest.approx(expected["router/max_load"], abs=1e-12)  # global counts
    assert got["optimizer_steps"] == expected["optimizer_steps"] == rl["minibatches"]
    assert dp.step_count == 1


def save_checkpoint(learner, tmp_path, name: str):
    """What RLLoop.save writes: the weights with the tokenizer (HF format) and the learner state."""
    directory = tmp_path / name
    learner.model.save_pretrained(directory / "policy")
    load_tokenizer("zaya-tiny").save_pretrained(directory / "policy")
    torch.save(learner.state_dict(), directory / "learner.pt")
    return directory / "policy", torch.load(directory / "learner.pt", weights_only=False)


def test_checkpoints_resume_across_worker_counts(ray_session, batches, tmp_path):
    cfg = config(minibatches=2)
    # written by 2 replicas, resumed by 1: the next update equals the 2 replicas' own next update
    with replicas(cfg) as dp:
        dp.step(batches[0])
        policy, state = save_checkpoint(dp, tmp_path, "from-two")
        assert state["step"] == 1 and state["balancer"]["steps"] == 2
        dp.step(batches[1])
        continued_by_two = weights(dp.model)
    resumed = build_local_learner(cfg, policy)
    resumed.load_state_dict(state)
    resumed.step(batches[1])
    assert_same_weights(weights(resumed.model), continued_by_two)

    # written by 1, resumed by 2
    single = build_local_learner(cfg)
    single.step(batches[0])
    policy, state = save_checkpoint(single, tmp_path, "from-one")
    before = weights(single.model)
    single.step(batches[1])
    with replicas(cfg, policy) as dp:
        dp.load_state_dict(state)
        assert dp.step_count == 1
        dp.step(batches[1])
        resumed_by_two = weights(dp.model)
    assert largest_change(resumed_by_two, before) > 50 * TOLERANCE
    assert_same_weights(resumed_by_two, weights(single.model))


@pytest.mark.parametrize(
    "rl", [{"minibatches": 3, "grad_accum": 2}, {"minibatches": 8}], ids=["uneven-shares", "empty-shares"]
)
def test_fsdp2_sharded_replicas_update_like_one_process(ray_session, batches, rl):
    single = build_local_learner(config(**rl))
    before = weights(single.model)
    expected = [single.step(batch) for batch in batches]  # two steps: AdamW's moments live in the shards
    with replicas(sharded(**rl)) as dp:
        held = held_elements(dp)
        got = [dp.step(batch) for batch in batches]
        after = weights(dp.model)
    whole = sum(p.numel() for p in single.model.parameters())
    layers = sum(p.numel() for n, p in single.model.named_parameters() if ".layers." in n)
    # every decoder-layer element lives on exactly one replica (dim-0 shards: odd sizes split unevenly), the rest
    # on both
    assert sum(held) == 2 * whole - layers
    assert max(held) < whole - layers * 0.49
    assert largest_change(after, before) > 50 * TOLERANCE
    assert_same_weights(after, weights(single.model))
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
        assert mine["router/max_load"] == pytest.approx(theirs["router/max_load"], abs=1e-12)


def test_fsdp2_checkpoints_hold_whole_tensors_and_resume_across_sharding(ray_session, batches, tmp_path):
    # written by 2 sharded replicas, resumed by one process: the next update equals the replicas' own
    with replicas(sharded(minibatches=2)) as dp:
        dp.step(batches[0])
        policy, state = save_checkpoint(dp, tmp_path, "sharded")
        moments = state["optimizers"][0]["state"]
        assert all(type(v) is torch.Tensor for entry in moments.values() for v in entry.values())
        dp.step(batches[1])
        continued = weights(dp.model)
    resumed = build_local_learner(config(minibatches=2), policy)
    resumed.load_state_dict(state)
    resumed.step(batches[1])
    assert_same_weights(weights(resumed.model), continued)
    # written by one process, resumed by 2 sharded replicas
    single = build_local_learner(config(minibatches=2))
    single.step(batches[0])
    policy, state = save_checkpoint(single, tmp_path, "single")
    single.step(batches[1])
    with replicas(sharded(minibatches=2), policy) as dp:
        dp.load_state_dict(state)
        dp.step(batches[1])
        assert_same_weights(weights(dp.model), weights(single.model))


@pytest.mark.parametrize("sharding", ["none", "fsdp2"])
def test_lora_replicas_start_from_the_same_adapters_and_update_like_one_process(ray_session, batches, sharding):
    # peft draws adapter weights from the global RNG; each replica's process had its own state, so before
    # adapters were seeded the replicas trained different models and their summed gradient was no one's
    def lora(**rl) -> Config:
        cfg = config(minibatches=2, **rl)
        cfg.model.lora = LoraConfig(r=4, alpha=8)
        return cfg

    torch.manual_seed(123)  # the driver's global RNG state must not matter
    single = build_local_learner(lora())
    expected = [single.step(batch) for batch in batches]
    with replicas(lora(learner_workers=2, learner_sharding=sharding)) as dp:
        got = [dp.step(batch) for batch in batches]
        rank1 = ray.get(dp.replicas[1].model_state.remote()) if sharding == "none" else None
        after = weights(dp.model)
    assert_same_weights(after, weights(single.model))
    if rank1 is not None:
        assert_same_weights(rank1, after, atol=0)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)


def test_fsdp2_needs_two_workers_and_adamw():
    with pytest.raises(UserError, match=r"^rl\.learner_sharding=fsdp2 shards across rl\.learner_workers >= 2$"):
        RLConfig(learner_sharding="fsdp2")
    with pytest.raises(UserError, match=r"^rl\.learner_sharding=fsdp2 needs rl\.optimizer=adamw$"):
        RLConfig(learner_sharding="fsdp2", learner_workers=2, optimizer="muon")


def test_a_checkpoint_of_another_optimizer_is_refused_by_the_replicas(ray_session, batches, tmp_path):
    single = build_local_learner(config())
    single.step(batches[0])
    with replicas(config(optimizer="muon")) as dp, pytest.raises(ValueError, match="different optimizer setup"):
        dp.load_state_dict(single.state_dict())


def test_more_replicas_than_the_cluster_holds_fail_before_any_actor_starts(ray_session):
    with pytest.raises(UserError, match="64 learner workers need 64 CPU"):
        replicas(config(), workers=64)


def test_shares_and_buckets():
    assert [share(8, 2, r) for r in range(2)] == [(0, 4), (4, 8)]
    assert [share(3, 2, r) for r in range(2)] == [(0, 2), (2, 3)]  # round half to even: 1.5 -> 2
    assert [share(1, 2, r) for r in range(2)] == [(0, 0), (0, 1)]
    f32, f64 = (16, torch.float32), (32, torch.float64)
    assert bucket_indices([f32, f32, f64, f32, f32, f32], limit=40) == [[0, 1], [2], [3, 4], [5]]
    assert bucket_indices([(100, torch.float32), f32], limit=40) == [[0], [1]]  # an oversized item travels alone
