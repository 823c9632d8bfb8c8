"""LoRA through peft, with target modules chosen per architecture, merged away on export."""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import PreTrainedModel

from posttrain.config.schema import LoraConfig

# ZAYA's experts are fused 3-D parameters (not nn.Linear), so LoRA goes on attention; its router is
# left alone because the balancing rule assumes the router is trained like the rest of the model.
TARGET_MODULES: dict[str, list[str]] = {
    "zaya": ["q_proj", "k_proj", "v_proj_current", "v_proj_delayed", "o_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def apply_lora(model: PreTrainedModel, lora: LoraConfig, *, task_type: str = "CAUSAL_LM") -> PreTrainedModel:
    """Wrap `model` in LoRA adapters when `lora.r > 0`; otherwise return it unchanged.

    `task_type="SEQ_CLS"` (reward models) makes peft train the new `score` head in full beside the adapters.
    """
    if lora.r == 0:
        return model
    targets = lora.target_modules or TARGET_MODULES.get(model.config.model_type, "all-linear")
    config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    return get_peft_model(model, config)


def merged(model: PreTrainedModel) -> PreTrainedModel:
    """A plain model with LoRA folded into its weights (what `final/` stores)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
