"""`device=auto|cpu|cuda` means the same thing in the SFT trainer, the learner and every rollout engine."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """`auto` is CUDA when one is visible (ROCm builds of torch report through the same API), else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
