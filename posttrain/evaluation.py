"""Held-out exact-match accuracy by greedy decoding: the yardstick printed at the end of a stage."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.answers import extract_answer

Messages = list[dict[str, str]]


@torch.no_grad()
def greedy_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    model.eval()
    tokenizer.padding_side = "left"
    completions = []
    for start in range(0, len(prompts), batch_size):
        texts = [
            tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            for p in prompts[start : start + batch_size]
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        output = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return completions


def exact_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    samples: list[Messages],
    *,
    max_new_tokens: int,
    batch_size: int,
) -> float:
    """Fraction of samples whose extracted answer equals the reference assistant turn's answer."""
    if not samples:
        return float("nan")
    prompts = [s[:-1] for s in samples]
    completions = greedy_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    hits = sum(
        extract_answer(c) is not None and extract_answer(c) == extract_answer(s[-1]["content"])
        for c, s in zip(completions, samples, strict=True)
    )
    return hits / len(samples)
