"""Score completions with a trained reward model: any `AutoModelForSequenceClassification` with one label.

The (prompt, completion) pair is rendered with the tokenizer's chat template when it has one, so the model
sees the format it was trained on; long inputs are truncated from the left (keeping the completion's end),
and scores are computed in batches under `torch.no_grad`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

from posttrain.errors import UserError
from posttrain.models import build_char_tokenizer
from posttrain.rewards.base import RewardOutput, as_text, mean, register_reward


def build_tiny_reward_model(directory: str | Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised ~0.3M-parameter Llama reward model with the char tokenizer (for tests/demos)."""
    tokenizer = build_char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


class RewardModelScorer:
    def __init__(self, path: str, *, batch_size: int = 8, max_length: int = 1024, device: str = "cpu") -> None:
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise UserError(f"reward model {path!r} cannot be loaded: {exc}") from None
        if self.model.config.num_labels != 1:
            raise UserError(f"reward model {path!r} has num_labels={self.model.config.num_labels}; expected 1")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.tokenizer.truncation_side = "left"
        self.batch_size, self.max_length, self.device = batch_size, max_length, device

    def render(self, prompt: str | list[dict[str, str]], completion: str) -> str:
        """The text the model scores; a prompt may be a whole conversation (list of messages) before the reply."""
        if self.tokenizer.chat_template:
            history = list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
            messages = [*history, {"role": "assistant", "content": completion}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        history = "".join(m["content"] for m in prompt) if isinstance(prompt, list) else prompt
        return history + completion

    @torch.no_grad()
    def score(self, prompts: Sequence[str | list[dict[str, str]]], completions: Sequence[str]) -> list[float]:
        texts = [
            self.render(p if isinstance(p, list) else as_text(p), as_text(c))
            for p, c in zip(prompts, completions, strict=True)
        ]
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
                add_special_tokens=not self.tokenizer.chat_template,  # the template already placed them
            ).to(self.device)
            scores += self.model(**batch).logits[:, 0].float().tolist()
        return scores


def preference_wins(scorer: RewardModelScorer, pairs: Sequence[dict[str, Any]]) -> list[float]:
    """Per pair, 1 when the chosen conversation outscores the rejected one, 0.5 on a tie, else 0.

    Each side is a whole conversation ending in the assistant reply, as `posttrain.data.preferences` gives it.
    """
    if not pairs:
        return []
    chosen = scorer.score([p["chosen"][:-1] for p in pairs], [p["chosen"][-1]["content"] for p in pairs])
    rejected = scorer.score([p["rejected"][:-1] for p in pairs], [p["rejected"][-1]["content"] for p in pairs])
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)]


@register_reward("reward_model")
class RewardModelReward:
    """The reward model's scalar output: raw (a Bradley-Terry logit, any sign), standardised within the batch
    (`normalize`), or squashed to (0, 1) (`sigmoid`), which a gate needs: its closed value 0 must rank below
    every open sample, or a sample that passes the checker but scores a negative logit earns less than one
    that fails it."""

    def __init__(
        self, *, path: str, batch_size: int = 8, max_length: int = 1024, normalize: bool = False, sigmoid: bool = False
    ) -> None:
        if normalize and sigmoid:
            raise ValueError("reward_model: choose normalize or sigmoid, not both")
        self.scorer = RewardModelScorer(path, batch_size=batch_size, max_length=max_length)
        self.normalize, self.sigmoid = normalize, sigmoid

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        if not completions:
            return RewardOutput([], {})
        raw = self.scorer.score(prompts, completions)
        scores = raw
        if self.normalize and len(raw) > 1:
            std = torch.tensor(raw).std().item() or 1.0
            scores = [(r - mean(raw)) / std for r in raw]
        elif self.sigmoid:
            scores = torch.sigmoid(torch.tensor(raw, dtype=torch.float64)).tolist()
        return RewardOutput(scores, {"reward_model/raw_mean": mean(raw)})
