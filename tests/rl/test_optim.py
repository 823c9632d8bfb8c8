"""Parameter split between Muon and AdamW, and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from posttrain.errors import UserError
from posttrain.models import load_model
from posttrain.rl.config import ParamGroup, RLConfig
from posttrain.rl.optim import build_optimizers, build_schedulers, lr_factor, split_muon_params


@pytest.mark.parametrize("preset", ["zaya-tiny", "llama-tiny"])
def test_muon_gets_hidden_matrices_and_adamw_the_rest(preset):
    model, _ = load_model(preset)
    muon, adamw = split_muon_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    embedding = model.get_input_embeddings().weight
    assert all(p.ndim == 2 for p in muon)
    assert id(embedding) not in {id(p) for p in muon}
    assert id(model.get_output_embeddings().weight) in {id(p) for p in adamw}
    assert any(p.ndim == 1 for p in adamw)
    if preset == "zaya-tiny":  # stacked experts [E, out, in] and CCA convolutions stay with AdamW
        three_d = [names[id(p)] for p in adamw if p.ndim == 3]
        assert any("experts" in n for n in three_d) and any("conv" in n for n in three_d)
    # every trainable parameter lands in exactly one group, tied weights once
    unique = {id(p) for p in model.parameters()}
    assert len(muon) + len(adamw) == len(unique)


def test_muon_optimizer_uses_configured_momentum_and_updates_weights():
    model, _ = load_model("zaya-tiny")
    cfg = RLConfig(optimizer="muon", lr=1e-2, muon_momentum=0.0)
    muon, adamw = build_optimizers(model, cfg)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert muon.param_groups[0]["momentum"] == 0.0
    before = [p.detach().clone() for p in muon.param_groups[0]["params"]]
    model(input_ids=torch.randint(5, 50, (2, 9))).logits.square().mean().backward()
    muon.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, muon.param_groups[0]["params"], strict=True)]
    assert any(changed)


def test_adamw_only_is_one_optimizer():
    model, _ = load_model("llama-tiny")
    (opt,) = build_optimizers(model, RLConfig(optimizer="adamw"))
    assert isinstance(opt, torch.optim.AdamW)


def test_schedule_shapes():
    kw = {"warmup_steps": 4, "total_steps": 14}
    assert [lr_factor(s, schedule="constant", **kw) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lr_factor(4, schedule="constant", **kw) == 1.0 and lr_factor(100, schedule="constant", **kw) == 1.0
    assert lr_factor(9, schedule="linear", **kw) == pytest.approx(0.5)
    assert lr_factor(14, schedule="linear", **kw) == pytest.approx(0.0)
    assert lr_factor(9, schedule="cosine", **kw) == pytest.approx(0.5)
    assert lr_factor(6, schedule="cosine", **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_factor(14, schedule="cosine", min_ratio=0.1, **kw) == pytest.approx(0.1)


def test_lambda_lr_applies_the_schedule_to_every_optimizer():
    model, _ = load_model("llama-tiny")
    cfg = RLConfig(optimizer="muon", lr=1.0, muon_lr=2.0, lr_schedule="linear", warmup_steps=0)
    optimizers = build_optimizers(model, cfg)
    schedulers = build_schedulers(optimizers, cfg, total_steps=4)
    for _ in range(2):
        for opt in optimizers:
            opt.step()
        for sched in schedulers:
            sched.step()
    assert [opt.param_groups[0]["lr"] for opt in optimizers] == pytest.approx([1.0, 0.5])


def test_param_groups_set_their_own_lr_and_freeze_at_zero():
    model, _ = load_model("zaya-tiny")
    groups = [ParamGroup(r"^model\.norm\.weight$", 0.5), ParamGroup(r"router", 0.0)]
    (opt,) = build_optimizers(model, RLConfig(optimizer="adamw", lr=1e-3, param_groups=groups))
    norm, router = model.model.norm.weight, model.model.layers[1].mlp.gate.router_mlp.fc1.weight
    assert not router.requires_grad and all(id(router) != id(p) for g in opt.param_groups for p in g["params"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(input_ids=torch.randint(5, 50, (2, 9))).logits.square().mean().backward()
    opt.step()
    after = {n: p.detach() for n, p in model.named_parameters()}
    # Adam's first step moves each coordinate by about its group's lr
    assert float((after["model.norm.weight"] - before["model.norm.weight"]).abs().max()) == pytest.approx(0.5, rel=1e-3)
    assert torch.equal(router, before["model.layers.1.mlp.gate.router_mlp.fc1.weight"])
    q = "model.embed_tokens.weight"
    assert float((after[q] - before[q]).abs().max()) == pytest.approx(1e-3, rel=1e-3)
    assert norm.requires_grad


def test_param_groups_take_matched_matrices_away_from_muon():
    model, _ = load_model("llama-tiny")
    q = model.model.layers[0].self_attn.q_proj.weight
    cfg = RLConfig(optimizer="muon", lr=1e-3, param_groups=[ParamGroup(r"layers\.0\.self_attn\.q_proj", 0.1)])
    muon, adamw = build_optimizers(model, cfg)
    assert id(q) not in {id(p) for p in muon.param_groups[0]["params"]}
    (own,) = [g for g in adamw.param_groups if any(p is q for p in g["params"])]
    assert own["lr"] == 0.1 and len(own["params"]) == 1


def test_param_groups_follow_the_schedule():
    model, _ = load_model("llama-tiny")
    cfg = RLConfig(optimizer="adamw", lr=1.0, lr_schedule="linear", param_groups=[ParamGroup("norm", 4.0)])
    optimizers = build_optimizers(model, cfg)
    (sched,) = build_schedulers(optimizers, cfg, total_steps=4)
    optimizers[0].step()
    sched.step()
    assert [g["lr"] for g in optimizers[0].param_groups] == pytest.approx([0.75, 3.0])


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([ParamGroup("no_such_parameter", 0.1)], "matches no parameter"),
        ([ParamGroup(".", 0.0)], "freezes every parameter"),
    ],
)
def test_param_groups_reject_what_cannot_be_meant(groups, message):
    model, _ = load_model("llama-tiny")
    with pytest.raises(UserError, match=message):
        build_optimizers(model, RLConfig(optimizer="adamw", param_groups=groups))


@pytest.mark.parametrize(
    ("match", "lr", "message"),
    [("(", 0.1, "not a regular expression"), ("", 0.1, "non-empty"), ("x", -1.0, ">= 0"), ("x", None, "needs an lr")],
)
def test_param_group_validation(match, lr, message):
    with pytest.raises(UserError, match=message):
        ParamGroup(match, lr)
