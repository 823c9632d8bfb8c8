"""ZAYA router bias balancing: exact routing capture, the update rule, convergence, state."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import load_model
from posttrain.models.router_balancing import RouterBalancer, find_routers

EXPERTS = 4


@pytest.fixture
def zaya():
    model, tokenizer = load_model("zaya-tiny", seed=0)
    return model.eval(), tokenizer


def test_hooks_count_exactly_the_models_own_routing_and_ignore_padding(zaya):
    model, tokenizer = zaya
    routers = find_routers(model)
    assert len(routers) == model.config.num_hidden_layers
    for router in routers:  # force some skips so the skip class is exercised
        router.balancing_biases[-1] = 0.5
        router.balancing_biases[1] = 0.2
    seen: list[torch.Tensor] = []

    def record(router, _inputs, output):  # the model's own choice: index, with skip shown as probability 0
        _, probs, indices, _ = output
        seen.append(torch.where(probs == 0, EXPERTS, indices).reshape(-1))

    handles = [r.register_forward_hook(record) for r in routers]
    ids = torch.randint(5, len(tokenizer), (3, 11))
    attention = torch.ones_like(ids)
    attention[2, 6:] = 0
    balancer = RouterBalancer(model)
    with torch.no_grad(), balancer.collect(attention):
        model(input_ids=ids, attention_mask=attention)
    for handle in handles:
        handle.remove()
    keep = attention.reshape(-1).bool()
    for layer, classes in enumerate(seen):
        expected = torch.bincount(classes[keep], minlength=EXPERTS + 1).double()
        assert torch.equal(balancer.counts[layer], expected)
    assert balancer.counts.sum() == keep.sum() * len(routers)


def test_first_step_moves_expert_biases_by_lr_against_the_load_and_leaves_skip_alone(zaya):
    model, _ = zaya
    balancer = RouterBalancer(model, lr=0.01)
    before = [r.balancing_biases.clone() for r in balancer.routers]
    balancer.counts[:] = torch.tensor([60.0, 20.0, 10.0, 10.0, 50.0], dtype=torch.float64)
    metrics = balancer.step()
    # shares of expert-routed tokens .6 .2 .1 .1 vs 1/4: expert 0 overloaded, the rest under
    for router, old in zip(balancer.routers, before, strict=True):
        delta = (router.balancing_biases - old).tolist()
        assert delta[:EXPERTS] == pytest.approx([-0.01, 0.01, 0.01, 0.01], rel=1e-4)
        assert delta[EXPERTS] == 0.0
    assert metrics["router/max_load"] == pytest.approx(0.6)
    assert metrics["router/skip_frac"] == pytest.approx(50 / 150)
    assert balancer.counts.sum() == 0  # counts reset after each step


def test_repeated_balancing_steps_undo_a_deliberately_imbalanced_router(zaya):
    model, tokenizer = zaya
    for router in find_routers(model):
        router.balancing_biases[0] = 0.3  # route (almost) everything to expert 0
        router.router_mlp.out_proj.weight.data *= 300  # a router whose scores depend on the token, as a trained one
    balancer = RouterBalancer(model, lr=0.02)
    gen = torch.Generator().manual_seed(0)
    history = []
    for _ in range(40):
        ids = torch.randint(5, len(tokenizer), (8, 32), generator=gen)
        with torch.no_grad(), balancer.collect(torch.ones_like(ids)):
            model(input_ids=ids)
        history.append(balancer.step())
    assert history[0]["router/max_load"] > 0.95
    late = history[-10:]
    assert sum(m["router/max_load"] for m in late) / len(late) < 0.6
    assert sum(m["router/load_entropy"] for m in late) / len(late) > 0.7
    assert all(r.balancing_biases[-1] == -1.0 for r in balancer.routers)


def test_state_dict_round_trip(zaya):
    model, _ = zaya
    balancer = RouterBalancer(model, lr=0.01)
    balancer.counts[:] = torch.tensor([5.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    balancer.step()
    fresh = RouterBalancer(model, lr=0.01)
    fresh.load_state_dict(balancer.state_dict())
    assert fresh.steps == 1 and torch.equal(fresh.exp_avg, balancer.exp_avg)
    assert torch.equal(fresh.exp_avg_sq, balancer.exp_avg_sq)


def test_dense_model_has_no_routers():
    model, _ = load_model("llama-tiny")
    with pytest.raises(ValueError, match="no routers"):
        RouterBalancer(model)
