"""What every kernel launch needs to know about where it runs: the interpreter or a GPU, and how big it is."""

from __future__ import annotations

import torch

from posttrain.kernels import interpreter_requested


def kernel_operand(tensor: torch.Tensor) -> torch.Tensor:
    """Under the interpreter, bf16 operands are widened to fp32 (exactly): Triton 3.9's interpreter multiplies
    bf16 tl.dot operands as their raw uint16 bits. On a GPU the tensor is passed as it is."""
    if interpreter_requested() and tensor.dtype == torch.bfloat16:
        return tensor.float()
    return tensor


def device_programs(device: torch.device) -> int:
    """Programs a launch should offer to keep the device busy: 4 per SM/CU on a GPU, 1 in the interpreter
    (which runs programs one after another, so fewer, larger ones are faster there)."""
    if device.type != "cuda":
        return 1
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def block_rows(rows: int, cap: int) -> int:
    """A row block: a power of two >= 16 (tl.dot's smallest tile), no larger than needed, at most `cap`."""
    size = 16
    while size < min(rows, cap):
        size *= 2
    return size
