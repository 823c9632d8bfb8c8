"""The Learner end to end on tiny real models: on-policy first minibatch, learning, accumulation, state."""

from __future__ import annotations

import copy

import pytest
import torch

from posttrain.models import load_model
from posttrain.rl.batch import TrainBatch
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from posttrain.rl.logprobs import token_logprobs


def bandit_batch(tokenizer, seed: int = 0) -> TrainBatch:
    """Two prompts x four completions; per prompt, completions starting with token `good` are rewarded."""
    gen = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    prompts, completions, rewards, groups = [], [], [], []
    for group in range(2):
        prompt = torch.randint(5, vocab, (4 + group,), generator=gen).tolist()
        for k in range(4):
            first = 7 if k % 2 == 0 else 9
            completions.append([first, *torch.randint(5, vocab, (2 + k,), generator=gen).tolist()])
            prompts.append(prompt)
            rewards.append(1.0 if first == 7 else 0.0)
            groups.append(group)
    behaviour = [[-4.0] * len(c) for c in completions]
    return TrainBatch.from_lists(
        prompts, completions, behaviour, rewards, groups, pad_token_id=tokenizer.pad_token_id, advantage="grpo"
    )


def logprob_margin(model, batch: TrainBatch) -> float:
    """Mean log-prob of the rewarded completions minus that of the others."""
    with torch.no_grad():
        logps, _ = token_logprobs(model.eval(), batch.input_ids, batch.attention_mask)
    seq = (logps * batch.completion_mask).sum(-1)
    good = batch.rewards > 0
    return float(seq[good].mean() - seq[~good].mean())


def sampled_by(model, batch: TrainBatch) -> TrainBatch:
    """The batch as a synchronous fleet serving `model` returns it: behaviour log-probs are the model's own."""
    with torch.no_grad():
        logps, _ = token_logprobs(copy.deepcopy(model).eval(), batch.input_ids, batch.attention_mask)
    return TrainBatch(**{**vars(batch), "behaviour_logprobs": logps * batch.completion_mask})


def test_first_minibatch_is_exactly_on_policy():
    model, tok = load_model("zaya-tiny")
    learner = Learner(model, RLConfig(minibatches=1, ppo_epochs=1), device="cpu")
    metrics = learner.step(sampled_by(model, bandit_batch(tok)))
    assert metrics["ratio_min"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["ratio_max"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["optimizer_steps"] == 1
    assert metrics["clip_frac"] == 0.0


def step_counting_forwards(learner: Learner, batch: TrainBatch) -> tuple[dict, int]:
    """Log-prob passes of one step: LM-head calls (a tiny model's logits fit the budget: one call per pass; a
    pass may run the body twice, once per shared prefix and once for the rows on top)."""
    forwards = []
    hook = learner.model.get_output_embeddings().register_forward_hook(lambda *_: forwards.append(1))
    metrics = learner.step(batch)
    hook.remove()
    return metrics, len(forwards)


@pytest.mark.parametrize("loss", ["ppo_clip", "cispo", "gspo"])
def test_one_update_per_batch_anchors_on_its_own_forward(loss):
    """rl.old_logprobs=recompute with one optimizer step per batch: the anchors are the training forward's own
    detached log-probs; the update equals the one from anchors recomputed up front, at one forward instead of two."""
    model, tok = load_model("zaya-tiny", seed=6)
    batch = bandit_batch(tok)
    with torch.no_grad():
        recomputed = token_logprobs(copy.deepcopy(model).eval(), batch.input_ids, batch.attention_mask)[0]
    cfg = RLConfig(loss=loss, optimizer="adamw", lr=1e-2, tis_cap=2.0, old_logprobs="recompute")
    own = Learner(copy.deepcopy(model), cfg, device="cpu")
    metrics, own_forwards = step_counting_forwards(own, batch)
    given = Learner(copy.deepcopy(model), cfg, device="cpu")
    _, given_forwards = step_counting_forwards(given, TrainBatch(**{**vars(batch), "old_logprobs": recomputed}))
    assert own_forwards == given_forwards == 1  # recomputing the anchors would add one
    assert metrics["ratio_min"] == pytest.approx(1.0) and metrics["ratio_max"] == pytest.approx(1.0)
    for a, b in zip(own.model.parameters(), given.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # two minibatches: the second trains on updated weights, so recomputed anchors come from a pass up front ...
    recompute = RLConfig(loss="ppo_clip", minibatches=2, old_logprobs="recompute")
    assert step_counting_forwards(Learner(copy.deepcopy(model), recompute, device="cpu"), batch)[1] == 3
    # ... while the rollout policy's log-probs (the default anchor) need no pass at all
    assert step_counting_forwards(Learner(copy.deepcopy(model), RLConfig(minibatches=2), device="cpu"), batch)[1] == 2


@pytest.mark.parametrize(
    ("preset", "loss", "optimizer"), [("zaya-tiny", "dppo", "muon"), ("llama-tiny", "ppo_clip", "adamw")]
)
def test_learner_raises_the_likelihood_of_rewarded_completions(preset, loss, optimizer):
    model, tok = load_model(preset, seed=2)
    batch = bandit_batch(tok)
    cfg = RLConfig(loss=loss, optimizer=optimizer, lr=3e-3, advantage="grpo", minibatches=2, ppo_epochs=2)
    learner = Learner(model, cfg, device="cpu")
    before = logprob_margin(model, batch)
    for _ in range(4):
        metrics = learner.step(batch)
    after = logprob_margin(model, batch)
    assert after > before + 1.0, (before, after)
    for key in ("loss", "grad_norm", "entropy", "kl_behaviour", "lr", "train_tokens_per_s", "clip_frac"):
        assert key in metrics
    assert metrics["optimizer_steps"] == 4  # 2 epochs x 2 minibatches
    assert ("router/max_load" in metrics) == (preset == "zaya-tiny")


def test_gradient_accumulation_does_not_change_the_gradient():
    model, tok = load_model("llama-tiny", seed=4)
    batch = bandit_batch(tok)
    grads = []
    for accum in (1, 3):
        cfg = RLConfig(optimizer="adamw", lr=1e-3, grad_accum=accum, aggregation="seq_mean_token_mean", shuffle=False)
        learner = Learner(copy.deepcopy(model), cfg, device="cpu")
        seen = []
        learner.optimizers[0].register_step_pre_hook(
            lambda opt, *_, seen=seen: seen.append(torch.cat([p.grad.flatten() for p in opt.param_groups[0]["params"]]))
        )
        learner.step(batch)
        grads.append(seen[0])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=1e-5)


def test_state_dict_resume_reproduces_the_uninterrupted_run():
    model, tok = load_model("zaya-tiny", seed=5)
    batch = bandit_batch(tok)
    cfg = RLConfig(lr=1e-3, minibatches=2, lr_schedule="cosine", warmup_steps=1, router_balancing_lr=0.01)
    straight = Learner(copy.deepcopy(model), cfg, total_steps=4, device="cpu")
    straight.step(batch)
    resumed_model = copy.deepcopy(straight.model)
    state = copy.deepcopy(straight.state_dict())
    straight.step(batch)

    resumed = Learner(resumed_model, cfg, total_steps=4, device="cpu")
    resumed.load_state_dict(state)
    assert resumed.step_count == 1 and resumed.balancer.steps == straight.balancer.steps - 2
    resumed.step(batch)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for a, b in zip(straight.model.buffers(), resumed.model.buffers(), strict=True):
        torch.testing.assert_close(a, b)
    assert straight.schedulers[0].get_last_lr() == resumed.schedulers[0].get_last_lr()


def test_router_balancing_switch():
    model, tok = load_model("zaya-tiny")
    biases = [b.clone() for n, b in model.named_buffers() if n.endswith("balancing_biases")]
    Learner(model, RLConfig(router_balancing=False), device="cpu").step(bandit_batch(tok))
    after = [b for n, b in model.named_buffers() if n.endswith("balancing_biases")]
    assert all(torch.equal(x, y) for x, y in zip(biases, after, strict=True))
    Learner(model, RLConfig(router_balancing=True, router_balancing_lr=0.01), device="cpu").step(bandit_batch(tok))
    assert any(not torch.equal(x, y) for x, y in zip(biases, after, strict=True))


def test_kl_to_reference_needs_a_reference_and_starts_at_zero():
    model, tok = load_model("llama-tiny")
    with pytest.raises(ValueError, match="reference model"):
        Learner(model, RLConfig(kl_coef=0.1), device="cpu")
    learner = Learner(model, RLConfig(kl_coef=0.1, optimizer="adamw"), ref_model=copy.deepcopy(model), device="cpu")
    assert learner.step(bandit_batch(tok))["kl_ref"] == pytest.approx(0.0, abs=1e-6)


def test_device_auto_picks_cuda_only_when_available():
    model, _ = load_model("llama-tiny")
    learner = Learner(model, RLConfig(optimizer="adamw"), device="auto")
    assert learner.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
