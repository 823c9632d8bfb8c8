"""Named model presets: tiny architectures, defined in configs/models/*.yaml, that train on a laptop CPU.

A preset fixes the architecture only; the vocabulary size and special-token ids come from the
tokenizer, so a preset can never disagree with the tokenizer it is paired with.
"""

from __future__ import annotations

from importlib import resources

from omegaconf import OmegaConf
from transformers import AutoConfig, PretrainedConfig, PreTrainedTokenizerBase


def _preset_files() -> dict[str, resources.abc.Traversable]:
    folder = resources.files("posttrain.configs") / "models"
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


PRESETS: tuple[str, ...] = tuple(sorted(_preset_files()))


def preset_config(name: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    spec = OmegaConf.to_container(OmegaConf.create(_preset_files()[name].read_text()))
    model_type = spec.pop("model_type")
    return AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **spec,
    )
