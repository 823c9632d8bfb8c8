"""Router replay: recorded routing is reproduced exactly after the router changes, and stays differentiable."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.models.router_balancing import find_routers
from posttrain.rl.batch import TrainBatch
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from posttrain.rl.router_replay import record_routing, replay_routing


@pytest.fixture
def zaya_and_ids():
    model, tokenizer = load_model("zaya-tiny", seed=0)
    for router in find_routers(model):  # token-dependent routing, with some skips
        router.router_mlp.out_proj.weight.data *= 300
        router.balancing_biases[-1] = 0.05
    ids = torch.randint(5, len(tokenizer), (2, 13), generator=torch.Generator().manual_seed(0))
    return model.eval(), ids


def test_replay_reproduces_recorded_routing_and_logits_after_the_router_moves(zaya_and_ids):
    model, ids = zaya_and_ids
    with torch.no_grad(), record_routing(model, ids.shape) as routing:
        before = model(input_ids=ids).logits
    assert (routing >= 0).all() and (routing == model.config.num_experts).any()
    # move the routers' scoring: live routing now differs from the recording
    with torch.no_grad():
        for router in find_routers(model):
            router.router_mlp.out_proj.weight.data = router.router_mlp.out_proj.weight.data.roll(1, dims=0)
        with record_routing(model, ids.shape) as live:
            model(input_ids=ids)
    assert not torch.equal(live, routing)
    with torch.no_grad(), replay_routing(model, routing):
        replayed = model(input_ids=ids).logits
    # with the original router weights restored, replayed logits equal the recorded forward's exactly
    with torch.no_grad():
        for router in find_routers(model):
            router.router_mlp.out_proj.weight.data = router.router_mlp.out_proj.weight.data.roll(-1, dims=0)
        with replay_routing(model, routing):
            again = model(input_ids=ids).logits
    torch.testing.assert_close(again, before)
    assert not torch.allclose(replayed, before)  # the gate weights come from the moved router


def test_replay_with_all_live_positions_is_the_plain_forward_and_grads_reach_the_router(zaya_and_ids):
    model, ids = zaya_and_ids
    routers = find_routers(model)
    live = torch.full((*ids.shape, len(routers)), -1, dtype=torch.long)
    with torch.no_grad():
        plain = model(input_ids=ids).logits
    with replay_routing(model, live):
        out = model(input_ids=ids).logits
    torch.testing.assert_close(out, plain)
    out.square().mean().backward()
    assert routers[0].router_mlp.out_proj.weight.grad.abs().sum() > 0


def test_forced_classes_are_the_ones_the_experts_run(zaya_and_ids):
    model, ids = zaya_and_ids
    routers = find_routers(model)
    forced = torch.full((*ids.shape, len(routers)), 2, dtype=torch.long)
    forced[0, :4] = model.config.num_experts  # skip
    used: list[torch.Tensor] = []
    experts = [m.experts for m in model.modules() if hasattr(m, "experts") and hasattr(m, "gate")]
    handles = [
        e.register_forward_hook(lambda m, inp, out: used.append((inp[1].clone(), inp[2].clone()))) for e in experts
    ]
    try:
        with torch.no_grad(), replay_routing(model, forced):
            model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    for indices, weights in used:
        flat_skip = forced[:, :, 0].reshape(-1) == model.config.num_experts
        assert (weights[flat_skip] == 0).all() and (weights[~flat_skip] > 0).all()
        assert (indices[~flat_skip] == 2).all()
    with pytest.raises(ValueError, match="routing must be"), replay_routing(model, forced[:, :, :1]):
        pass


def test_learner_replays_batch_routing_and_counts_the_replayed_load():
    model, _ = load_model("zaya-tiny", seed=0)
    batch = TrainBatch.from_lists(
        [[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14]], [[-1.0] * 2, [-1.0] * 3], [1.0, 0.0], [0, 0], pad_token_id=0
    )
    layers = len(find_routers(model))
    batch.routing = torch.full((*batch.input_ids.shape, layers), model.config.num_experts - 1, dtype=torch.long)
    used: list[torch.Tensor] = []
    experts = [m.experts for m in model.modules() if hasattr(m, "experts") and hasattr(m, "gate")]
    for e in experts:
        e.register_forward_hook(lambda m, inp, out: used.append(inp[1].clone()))
    metrics = Learner(model, RLConfig(optimizer="adamw"), device="cpu").step(batch)
    assert used and all((indices == model.config.num_experts - 1).all() for indices in used)
    assert metrics["router/max_load"] == 1.0  # every token ran on the replayed expert
