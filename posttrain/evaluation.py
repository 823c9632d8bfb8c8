"""Held-out accuracy: the yardstick printed at the end of a stage (greedy, or pass@1 over sampled answers)."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from posttrain.answers import extract_answer

Messages = list[dict[str, str]]


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Messages],
    *,
    max_new_tokens: int,
    batch_size: int,
    temperature: float = 0.0,
    samples: int = 1,
    seed: int = 0,
) -> list[str]:
    """Greedy completions (temperature 0), or `samples` sampled ones per prompt, prompt-major.

    Sampling runs under a forked, seeded torch RNG, so an evaluation is reproducible and leaves the
    caller's RNG stream (a training run's) untouched.
    """
    if temperature <= 0 and samples != 1:
        raise ValueError("greedy decoding gives one completion per prompt; sample with temperature > 0")
    model.eval()
    tokenizer.padding_side = "left"
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    completions = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                for p in prompts[start : start + batch_size]
            ]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                num_return_sequences=samples,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
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
    completions = generate_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    hits = sum(
        extract_answer(c) is not None and extract_answer(c) == extract_answer(s[-1]["content"])
        for c, s in zip(completions, samples, strict=True)
    )
    return hits / len(samples)
