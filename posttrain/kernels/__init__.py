"""Triton kernels for the learner: fused LM-head log-probs/entropy and ZAYA's top-1 MoE expert compute.

Leaf modules: they import only torch and triton. This package file imports neither Triton nor a kernel,
so `import posttrain.kernels` works where triton is not installed; the kernel modules
(`linear_logprobs`, `moe`) import triton when they are imported. `kernels=auto|triton|torch` is resolved
by `posttrain.devices.resolve_kernels`, which asks `triton_problem` below. docs/kernels.md has the design.
"""

from __future__ import annotations

import importlib.util
import os

import torch


def interpreter_requested() -> bool:
    """TRITON_INTERPRET=1 runs every kernel on CPU tensors in Triton's (slow, numpy) interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def triton_problem(device: str) -> str | None:
    """Why the Triton kernels cannot run on `device` ('cpu' or 'cuda'), or None when they can."""
    if importlib.util.find_spec("triton") is None:
        return "needs the triton package (pip install 'posttrain[gpu]')"
    if interpreter_requested():
        return None
    if device != "cuda" or not torch.cuda.is_available():
        return "needs a GPU (CUDA or ROCm); set TRITON_INTERPRET=1 to run the kernels in Triton's CPU interpreter"
    return None
