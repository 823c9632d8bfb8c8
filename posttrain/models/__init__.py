"""Models: presets (tiny ZAYA and Llama built from configs), a character tokenizer, loading, reward-model
heads, LoRA, ZAYA router balancing."""

from posttrain.models.loading import check_model_path, load_model, load_tokenizer, model_skeleton
from posttrain.models.presets import PRESETS
from posttrain.models.sequence_classification import ZayaForSequenceClassification, load_reward_model
from posttrain.models.tokenizer import build_char_tokenizer

__all__ = [
    "PRESETS",
    "ZayaForSequenceClassification",
    "build_char_tokenizer",
    "check_model_path",
    "load_model",
    "load_reward_model",
    "load_tokenizer",
    "model_skeleton",
]
