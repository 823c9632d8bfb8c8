"""Resolve `model.path` (a preset name, an HF checkpoint directory or a Hub id) to a model and its tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from posttrain.errors import UserError
from posttrain.hub import fetch, is_hub_id
from posttrain.models.presets import PRESETS, preset_config
from posttrain.models.tokenizer import build_char_tokenizer


def check_model_path(path: str) -> None:
    """Fail fast, with one line, on a path that cannot possibly load; called before any work starts.
    A Hub id is fetched here (its config; the weights follow when the model loads)."""
    if path in PRESETS:
        return
    directory = Path(path)
    if not directory.is_dir():
        if not is_hub_id(path):
            raise UserError(
                f"model.path={path!r} is neither a preset ({', '.join(PRESETS)}), a directory nor a Hugging Face Hub id"
            )
        fetch("model.path", path, "model", lambda: AutoConfig.from_pretrained(path))
        return
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise UserError(f"model.path={path!r} has no config.json; expected a Hugging Face checkpoint directory")
    try:
        json.loads(config_file.read_text())
        AutoConfig.from_pretrained(directory)
    except (ValueError, OSError, KeyError) as exc:
        raise UserError(f"model.path={path!r} has an unreadable config.json: {exc}") from None
    weights = list(directory.glob("*.safetensors")) + list(directory.glob("*.bin"))
    if not weights:
        raise UserError(f"model.path={path!r} holds no weights (*.safetensors or *.bin)")


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    if path in PRESETS:
        return build_char_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"model.path={path!r}: cannot load its tokenizer: {exc}") from None


def model_skeleton(path: str) -> PreTrainedModel:
    """The model at `path` on the meta device (no memory, no weights read), for checks on its structure
    — parameter names, say — that must fail before a run starts."""
    check_model_path(path)
    config = preset_config(path, load_tokenizer(path)) if path in PRESETS else AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_model(
    path: str,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Presets are initialised from `seed`, so the same seed always yields the same starting weights."""
    check_model_path(path)
    tokenizer = load_tokenizer(path)
    if path in PRESETS:
        config = preset_config(path, tokenizer)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"model.path={path!r}: cannot load its weights: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
