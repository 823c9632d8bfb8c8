"""ZAYA's grouped-GEMM experts (Triton interpreter) against transformers' own eager expert loop."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig

pytest.importorskip("triton")

from transformers.models.zaya.modeling_zaya import ZayaExperts

from posttrain.kernels.moe import grouped_experts, is_zaya_experts, plan_experts, use_triton_experts
from posttrain.models import load_model

HIDDEN, INTER, EXPERTS = 24, 20, 4  # neither a multiple of the 16-wide tiles


def eager_experts(seed: int = 0, hidden: int = HIDDEN, inter: int = INTER) -> ZayaExperts:
    """transformers' ZayaExperts running its eager per-expert loop: the reference."""
    config = AutoConfig.for_model(
        "zaya", hidden_size=hidden, moe_intermediate_size=inter, num_experts=EXPERTS, num_hidden_layers=1
    )
    config._experts_implementation = "eager"
    module = ZayaExperts(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.randn(module.gate_up_proj.shape, generator=gen) * 0.3)
        module.down_proj.copy_(torch.randn(module.down_proj.shape, generator=gen) * 0.3)
    return module


def forward_backward(module, x, index, gate, skip):
    """ZAYA's router convention: a skipped token reaches the experts as expert 0 with gate weight 0."""
    x, gate = x.clone().requires_grad_(), gate.clone().requires_grad_()
    out = module(x, index.masked_fill(skip, 0), gate.masked_fill(skip, 0))
    upstream = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * upstream).sum(), [x, gate, module.gate_up_proj, module.down_proj])
    return [out.detach(), *grads]


def routing(kind: str, tokens: int = 37):
    gen = torch.Generator().manual_seed(1)
    index = torch.randint(0, EXPERTS, (tokens, 1), generator=gen)
    skip = torch.rand(tokens, 1, generator=gen) < 0.3
    if kind == "empty expert":
        index[index == 2] = 3
    elif kind == "one expert":
        index[:] = 1
        skip[:] = False
    elif kind == "all skipped":
        skip[:] = True
    elif kind == "no skip":
        skip[:] = False
    return index, torch.rand(tokens, 1, generator=gen) * 0.9 + 0.1, skip


@pytest.mark.parametrize("kind", ["mixed", "empty expert", "one expert", "all skipped", "no skip"])
def test_output_and_gradients_equal_the_eager_loop(kind):
    index, gate, skip = routing(kind)
    x = torch.randn(37, HIDDEN, generator=torch.Generator().manual_seed(2))
    reference = eager_experts()
    oracle = forward_backward(copy.deepcopy(reference).double(), x.double(), index, gate.double(), skip)
    module = copy.deepcopy(reference)
    use_triton_experts(module)
    got = forward_backward(module, x, index, gate, skip)
    for name, value, want in zip(("out", "x", "gate", "gate_up_proj", "down_proj"), got, oracle, strict=True):
        torch.testing.assert_close(value.double(), want, atol=1e-5, rtol=1e-4, msg=name)
    if kind == "all skipped":
        assert not any(t.any() for t in got)
    if kind == "empty expert":
        assert not got[3][2].any() and not got[4][2].any()  # expert 2's weights get a zero gradient


@pytest.mark.parametrize("kind", ["mixed", "one expert"])
def test_many_tiles_in_every_direction(kind):
    """16-wide tiles over H = 40, 2I = 72, I = 36: ragged tiles along every GEMM dimension, and with one
    expert taking all 37 tokens, three row tiles of one expert."""
    index, gate, skip = routing(kind)
    x = torch.randn(37, 40, generator=torch.Generator().manual_seed(3))
    reference = eager_experts(hidden=40, inter=36)
    oracle = forward_backward(copy.deepcopy(reference).double(), x.double(), index, gate.double(), skip)

    def tiled(hidden, top_k_index, top_k_weights):
        return grouped_experts(
            hidden, top_k_index[:, 0], top_k_weights[:, 0], reference.gate_up_proj, reference.down_proj,
            reference.act_fn, max_tile=16,
        )  # fmt: skip

    tiled.gate_up_proj, tiled.down_proj = reference.gate_up_proj, reference.down_proj
    got = forward_backward(tiled, x, index, gate, skip)
    for name, value, want in zip(("out", "x", "gate", "gate_up_proj", "down_proj"), got, oracle, strict=True):
        torch.testing.assert_close(value.double(), want, atol=1e-5, rtol=1e-4, msg=name)


def test_skip_class_index_is_skipped_too():
    """The eager loop also skips a token sent to class E itself (its `continue`), whatever its gate."""
    index, gate, _ = routing("no skip")
    index[::3] = EXPERTS
    x = torch.randn(37, HIDDEN)
    reference = eager_experts()
    want = reference(x, index, gate)
    use_triton_experts(reference)
    got = reference(x, index, gate)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert not got[::3].any()


def test_plan_sorts_routed_tokens_and_cuts_tiles_per_expert():
    """Hand-worked: token 2 skips (gate 0), token 7 chose class E=5 (skip); expert 4 gets no token."""
    index = torch.tensor([2, 0, 0, 1, 2, 0, 3, 5])
    gate = torch.tensor([0.5, 0.2, 0.0, 0.3, 0.4, 0.1, 0.6, 0.7])
    plan = plan_experts(index, gate, num_experts=5, block_m=1)
    assert plan.rows.tolist() == [1, 5, 3, 0, 4, 6]  # expert 0: 1, 5; 1: 3; 2: 0, 4; 3: 6
    assert plan.offsets.tolist() == [0, 2, 3, 5, 6, 6]
    assert plan.tile_expert.tolist() == [0, 0, 1, 2, 2, 3]
    assert plan.tile_start.tolist() == [0, 1, 2, 3, 4, 5]
    assert plan.tile_stop.tolist() == [2, 2, 3, 5, 5, 6]
    wide = plan_experts(index, gate, num_experts=5, block_m=16)
    assert wide.tile_expert.tolist() == [0, 1, 2, 3] and wide.tile_start.tolist() == [0, 2, 3, 5]


def test_under_bf16_autocast_matches_the_eager_loop():
    """Under autocast the experts compute in bf16, as the eager loop's linears do."""
    index, gate, skip = routing("mixed")
    x = torch.randn(37, HIDDEN, generator=torch.Generator().manual_seed(4))
    reference = eager_experts()
    module = copy.deepcopy(reference)
    use_triton_experts(module)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = forward_backward(reference, x, index, gate, skip)
        got = forward_backward(module, x, index, gate, skip)
    for name, value, expected in zip(("out", "x", "gate", "gate_up_proj", "down_proj"), got, want, strict=True):
        assert value.dtype == expected.dtype, name
        torch.testing.assert_close(value, expected, atol=2e-2, rtol=2e-2, msg=name)


def test_top2_routing_is_rejected():
    module = eager_experts()
    use_triton_experts(module)
    with pytest.raises(ValueError, match="top-1 routing only"):
        module(torch.randn(4, HIDDEN), torch.zeros(4, 2, dtype=torch.long), torch.ones(4, 2))


def test_patching_a_whole_zaya_model_and_undoing_it():
    model, tokenizer = load_model("zaya-tiny", seed=1)
    ids = torch.randint(5, len(tokenizer), (2, 19), generator=torch.Generator().manual_seed(0))
    experts = [m for m in model.modules() if is_zaya_experts(m)]
    assert len(experts) == model.config.num_hidden_layers

    def logits_and_grads():
        logits = model(input_ids=ids).logits
        logits.square().mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return logits.detach(), grads

    want_logits, want_grads = logits_and_grads()
    restore = use_triton_experts(model)
    assert all("forward" in vars(m) for m in experts)
    logits, grads = logits_and_grads()
    torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-4)
    assert grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    restore()
    assert not any("forward" in vars(m) for m in experts)


def test_models_without_zaya_experts_are_left_alone():
    model, _ = load_model("llama-tiny", seed=1)
    use_triton_experts(model)()
    assert not any(is_zaya_experts(m) for m in model.modules())
    assert not any("forward" in vars(m) for m in model.modules())
