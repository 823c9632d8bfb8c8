"""Independent oracles for rollout tests."""

from __future__ import annotations

import torch


def teacher_forced_logprobs(model, prompt_ids, completion_ids, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T) of each completion token, from one forward pass over prompt + completion."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    scores = torch.log_softmax(logits / temperature, dim=-1)
    return scores.gather(1, torch.tensor(completion_ids)[:, None])[:, 0]
