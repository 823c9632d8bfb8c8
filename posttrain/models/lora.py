"""LoRA through peft, with target modules chosen per architecture, merged away on export."""

from __future__ import annotations

import torch
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


def apply_lora(
    model: PreTrainedModel, lora: LoraConfig, *, seed: int, task_type: str = "CAUSAL_LM"
) -> PreTrainedModel:
    """Wrap `model` in LoRA adapters when `lora.r > 0`; otherwise return it unchanged.

    The adapters are initialised from `seed`, not from the global RNG: data-parallel learner replicas, the
    driver's mirror and a rerun must all start from the same adapters. `task_type="SEQ_CLS"` (reward models)
    makes peft train the new `score` head in full beside the adapters.
    """
    if lora.r == 0:
        return model
    targets = lora.target_modules or TARGET_MODULES.get(model.config.model_type, "all-linear")
    config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type=task_type
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def check_targets(model_path: str, lora: LoraConfig) -> None:
    """Every `model.lora.target_modules` entry must name modules of the model (checked on a meta skeleton), so a
    typo is one line before any work instead of a peft traceback mid-run."""
    from posttrain.errors import UserError
    from posttrain.models.loading import model_skeleton

    names = [name for name, _ in model_skeleton(model_path).named_modules()]
    for target in lora.target_modules or []:
        if not any(name == target or name.endswith(f".{target}") for name in names):
            leaves = sorted({name.rsplit(".", 1)[-1] for name in names if name})
            raise UserError(
                f"model.lora.target_modules: {target!r} names no module of {model_path}; "
                f"module names include {', '.join(leaves[:12])}"
            )


def load_adapter(model: PreTrainedModel, directory) -> PreTrainedModel:
    """`model` with the trainable LoRA adapter saved in `directory` (a resumed run's policy)."""
    return PeftModel.from_pretrained(model, str(directory), is_trainable=True)


def plain_state_dict(model: PreTrainedModel) -> dict:
    """The weights a plain copy of the model would hold (LoRA deltas added, out of place), under its own names.

    What the rollout engines load at weight sync: they run the plain architecture. The adapters are never merged
    into the live model, whose base weights therefore stay bit-exact."""
    if not isinstance(model, PeftModel):
        return model.state_dict()
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {
        f"{name}.weight": module.get_delta_weight(adapter)
        for name, module in base.named_modules()
        if isinstance(module, LoraLayer)
        for adapter in module.active_adapters
        if adapter in module.lora_A
    }
    state = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = value + deltas[key].to(value.dtype) if key in deltas else value
    return state


def merged(model: PreTrainedModel) -> PreTrainedModel:
    """A plain model with LoRA folded into its weights (what `final/` stores)."""
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
