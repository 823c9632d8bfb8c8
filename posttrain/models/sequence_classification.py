"""Reward models: one-label sequence classifiers for every architecture posttrain trains, ZAYA included.

transformers (5.23) ships `LlamaForSequenceClassification` but no `ZayaForSequenceClassification`. Both are
made the same way, so ZAYA's is declared here exactly as transformers declares Llama's: its documented
`GenericForSequenceClassification` mixin (the backbone from `AutoModel`, a bias-free linear `score` head
read at each sequence's last non-pad token) on top of `ZayaPreTrainedModel`, registered with
`AutoModelForSequenceClassification`. Importing `posttrain.models` registers it, so a ZAYA reward model
saved by posttrain loads with `AutoModelForSequenceClassification.from_pretrained` in any process that
has imported posttrain.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.models.zaya import ZayaConfig, ZayaPreTrainedModel

from posttrain.errors import UserError
from posttrain.models.loading import check_model_path, load_tokenizer
from posttrain.models.presets import PRESETS, preset_config


class ZayaForSequenceClassification(GenericForSequenceClassification, ZayaPreTrainedModel):
    """ZAYA backbone plus a one-vector `score` head (num_labels outputs) on the last non-pad token."""


AutoModelForSequenceClassification.register(ZayaConfig, ZayaForSequenceClassification, exist_ok=True)


def load_reward_model(
    path: str, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A num_labels=1 sequence classifier from a preset (initialised from `seed`), a causal-LM checkpoint
    (its backbone; the `score` head is new, drawn from `seed`) or an existing reward model."""
    check_model_path(path)
    tokenizer = load_tokenizer(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = preset_config(path, tokenizer) if path in PRESETS else AutoConfig.from_pretrained(path)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if path in PRESETS:
            return AutoModelForSequenceClassification.from_config(config, dtype=dtype), tokenizer
        from trl.trainer.reward_trainer import suppress_seqcls_warning  # trl is heavy; only needed here

        try:
            # TRL's guard: from a causal LM, the unused `lm_head` and the new `score` head are expected, not warned.
            with suppress_seqcls_warning():
                model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=dtype)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"model.path={path!r}: cannot load it as a reward model: {exc}") from None
    return model, tokenizer
