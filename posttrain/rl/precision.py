"""`rl.precision=bf16`: the learner's forward under bf16 autocast, with the fp32 islands of the ZAYA1 recipe.

Weights and optimizer state stay fp32 (master weights); inside the decoder, matmuls run in bf16. What stays fp32:

- residual stream and residual adds: transformers' ZayaModel casts the stream to fp32 before the first layer and
  ZayaResidualScaling adds fp32 parameters to it, so both adds of every layer are fp32 already (their code);
- RMSNorms: ZayaRMSNorm normalises in fp32 and multiplies by its fp32 weight; the decoder and final norms take
  the fp32 residual stream as input and so return fp32 (their code);
- the router, here: every ZayaRouter runs with autocast off on fp32 inputs, so its logits, the softmax and the
  top-1 choice do not depend on bf16 rounding (CUDA autocast alone would run the softmax in fp32 but compute the
  logits in bf16);
- the LM head, here: it runs with autocast off on fp32 hidden states, so the [tokens, vocab] logits and the
  log-softmax over ZAYA1's 262k vocabulary are fp32. (The fused Triton head, `kernels=triton`, reads the head
  weight itself and accumulates in fp32 anyway.)

Both are instance-level `forward` wrappers that `restore()` removes; forward hooks (router balancing, replay)
still see every call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from posttrain.errors import UserError
from posttrain.models.router_balancing import find_routers
from posttrain.rl.logprobs import split_base_and_head


def check_precision(precision: str, device: str) -> None:
    """bf16 autocast is for GPUs (CPU autocast would run slower than fp32): refused up front elsewhere."""
    if precision == "bf16" and device != "cuda":
        raise UserError(f"rl.precision=bf16 needs a GPU, but device resolves to {device}; use rl.precision=fp32")


def _fp32(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


def _wrap(module: nn.Module, make: Callable[[Callable], Callable]) -> None:
    module.forward = make(module.forward)  # an instance attribute shadows the class's forward


def use_bf16_autocast(model: nn.Module, device_type: str) -> Callable[[], None]:
    """Run `model`'s decoder under bf16 autocast on `device_type`, its routers and LM head in fp32; returns
    `restore()`. `device_type` is 'cuda' in training; tests pass 'cpu' (CPU autocast has bf16 matmuls too)."""
    base, head = split_base_and_head(model)
    islands = [head, *find_routers(model)]

    def autocast(forward: Callable) -> Callable:
        def run(*args, **kwargs):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return forward(*args, **kwargs)

        return run

    def fp32(forward: Callable) -> Callable:
        def run(*args, **kwargs):
            with torch.autocast(device_type, enabled=False):
                return forward(*map(_fp32, args), **{key: _fp32(value) for key, value in kwargs.items()})

        return run

    _wrap(base, autocast)
    for island in islands:
        _wrap(island, fp32)

    def restore() -> None:
        for module in (base, *islands):
            del module.forward

    return restore
