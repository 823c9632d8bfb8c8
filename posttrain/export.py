"""Write `final/`: a plain HF checkpoint (LoRA merged) with its tokenizer, loadable by Auto classes."""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.models.lora import merged


def export_final(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> PreTrainedModel:
    """Saved to a sibling first and renamed, so a crash never leaves a half-written final/."""
    plain = merged(model)
    staging = directory.with_name(directory.name + ".partial")
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return plain
