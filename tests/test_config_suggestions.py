"""Unknown config keys: a suggestion only when one is close; otherwise the valid keys of the nearest section.

Every expected message is written out by hand from the schema (an independent oracle), including the
full key lists, so a suggestion that drifts or a list that grows a stray key fails here.
"""

import pytest

from posttrain.config import compose
from posttrain.errors import UserError

TRAINER_KEYS = (
    "batch_size, grad_accum, gradient_checkpointing, keep_checkpoints, lr, lr_scheduler, max_grad_norm, max_steps, "
    "router_balancing, "
    "router_balancing_lr, save_every, warmup_steps, weight_decay"
)
TOP_LEVEL = (
    "curriculum, data, device, envs, eval, kernels, logging, model, plugins, problems, ray, resume, rewards, rl, "
    "rollout, rsa, run, seed, serve, stage, trainer, ttc"
)


@pytest.mark.parametrize(
    ("typed", "hint"),
    [
        # one segment mistyped, in a section or at the top
        ("trainer.max_stepz", "did you mean 'trainer.max_steps'?"),
        ("trainr.max_steps", "did you mean 'trainer.max_steps'?"),
        ("trainr.max_stepz", "did you mean 'trainer.max_steps'?"),
        ("modle.path", "did you mean 'model.path'?"),
        ("model.lora.rr", "did you mean 'model.lora.r'?"),
        ("sed", "did you mean 'seed'?"),
        ("rl.epsilon_lo", "did you mean 'rl.epsilon_low'?"),
        ("logging.report", "did you mean 'logging.report_to'?"),
        # a key that lives in another section, or under its Hugging Face / TRL name
        ("report_to", "did you mean 'logging.report_to'?"),
        ("max_steps", "did you mean 'trainer.max_steps'?"),
        ("batch_size", "did you mean 'trainer.batch_size', 'eval.batch_size' or 'rollout.batch_size'?"),
        ("learning_rate", "did you mean 'trainer.lr'?"),
        ("trainer.learning_rate", "did you mean 'trainer.lr'?"),
        ("per_device_train_batch_size", "did you mean 'trainer.batch_size'?"),
        ("model_name_or_path", "did you mean 'model.path'?"),
        # nothing close: the nearest section's keys
        ("trainer.foo", f"valid keys under 'trainer': {TRAINER_KEYS}"),
        ("model.lora.rank", "valid keys under 'model.lora': alpha, dropout, r, target_modules"),
        ("wandb", f"valid top-level keys: {TOP_LEVEL}"),
        ("zzz.yyy", f"valid top-level keys: {TOP_LEVEL}"),
    ],
)
def test_unknown_key_message(typed, hint):
    with pytest.raises(UserError) as error:
        compose("sft", [f"{typed}=1"])
    assert str(error.value) == f"unknown config key '{typed}'; {hint}"
