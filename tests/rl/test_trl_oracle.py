"""Oracle: our policy losses equal TRL GRPOTrainer's own `_compute_loss` on identical inputs.

TRL builds its per-token log-probs through its own fused LM head (with temperature); we build ours with
posttrain.rl.logprobs on the same model. Old log-probs are the current ones plus noise, so ratios land on
both sides of both clip bounds and the clipping branches are exercised.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from posttrain.models import load_model
from posttrain.rl.logprobs import token_logprobs
from posttrain.rl.losses import LossParams, compute_policy_loss

BATCH, PROMPT, COMPLETION, MAX_COMPLETION = 6, 5, 7, 9
EPS_LOW, EPS_HIGH, TEMPERATURE = 0.2, 0.28, 0.7

CISPO_CAP = 1.2  # TRL passes epsilon_high to CISPO as the cap itself; 1.2 caps some of the noisy ratios
# (TRL loss_type, TRL importance_sampling_level, our loss, our aggregation)
VARIANTS = [
    ("grpo", "token", "ppo_clip", "seq_mean_token_mean"),
    ("dapo", "token", "ppo_clip", "token_mean"),
    ("dr_grpo", "token", "ppo_clip", "seq_mean_token_sum_norm"),
    ("grpo", "sequence", "gspo", "seq_mean_token_mean"),
    ("cispo", "token", "cispo", "token_mean"),
]


@pytest.fixture(scope="module", params=["llama-tiny", "zaya-tiny"])
def model_and_inputs(request, tmp_path_factory):
    model, tokenizer = load_model(request.param, seed=3)
    gen = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(10, len(tokenizer), (BATCH, PROMPT), generator=gen)
    completion_ids = torch.randint(10, len(tokenizer), (BATCH, COMPLETION), generator=gen)
    completion_mask = torch.ones(BATCH, COMPLETION, dtype=torch.long)
    completion_mask[1, 4:] = 0
    completion_mask[4, 2:] = 0
    advantages = torch.randn(BATCH, generator=gen)
    with torch.no_grad():
        ids = torch.cat([prompt_ids, completion_ids], 1)
        attention = torch.cat([torch.ones_like(prompt_ids), completion_mask], 1)
        current, _ = token_logprobs(model, ids, attention, temperature=TEMPERATURE)
    old = current[:, PROMPT:] + 0.35 * torch.randn(BATCH, COMPLETION, generator=gen)
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "num_items_in_batch": completion_mask.sum(),
    }
    return model, tokenizer, inputs, tmp_path_factory.mktemp("trl")


def trl_trainer(model, tokenizer, out_dir, loss_type: str, level: str) -> GRPOTrainer:
    args = GRPOConfig(
        output_dir=str(out_dir),
        per_device_train_batch_size=BATCH,
        num_generations=BATCH // 2,
        max_completion_length=MAX_COMPLETION,
        use_cpu=True,
        bf16=False,  # TRL 1.x defaults to bf16 autocast; the oracle compares fp32 with fp32
        report_to="none",
        beta=0.0,
        loss_type=loss_type,
        importance_sampling_level=level,
        epsilon=EPS_LOW,
        epsilon_high=CISPO_CAP if loss_type == "cispo" else EPS_HIGH,
        temperature=TEMPERATURE,
    )
    dataset = Dataset.from_dict({"prompt": ["ab", "cd"]})
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=dataset,
    )
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop; one micro-batch per step
    return trainer


def ours(model, inputs, loss: str, aggregation: str) -> tuple[torch.Tensor, dict]:
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    logps, _ = token_logprobs(model, ids, attention, temperature=TEMPERATURE, chunk_size=4)
    return compute_policy_loss(
        loss,
        logps[:, PROMPT:],
        inputs["old_per_token_logps"],
        inputs["advantages"],
        inputs["completion_mask"],
        params=LossParams(epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH, cispo_cap=CISPO_CAP),
        aggregation=aggregation,
        norm_length=MAX_COMPLETION,
    )


def grads(model) -> torch.Tensor:
    flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return flat


@pytest.mark.parametrize(("trl_loss", "level", "loss", "aggregation"), VARIANTS)
def test_loss_and_gradient_match_trl(model_and_inputs, trl_loss, level, loss, aggregation):
    model, tokenizer, inputs, out_dir = model_and_inputs
    trainer = trl_trainer(model, tokenizer, out_dir, trl_loss, level)
    trainer.model.train()
    model.zero_grad(set_to_none=True)
    expected = trainer._compute_loss(trainer.model, inputs)
    expected.backward()
    expected_grad = grads(model)

    got, metrics = ours(model, inputs, loss, aggregation)
    got.backward()
    got_grad = grads(model)

    assert abs(got.item() - expected.item()) <= 1e-6, (got.item(), expected.item())
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-6)
    if loss == "ppo_clip":  # the noise in old_per_token_logps must actually exercise both clip branches
        assert metrics["clip_frac_low"] > 0 and metrics["clip_frac_high"] > 0
    if loss == "cispo":  # ... and the cap
        assert metrics["clip_frac_high"] > 0
