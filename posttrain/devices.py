"""`device=auto|cpu|cuda` means the same thing in the SFT trainer, the learner and every rollout engine;
`kernels=auto|triton|torch` is validated by every stage and used by the RL learner."""

from __future__ import annotations

from posttrain.errors import UserError

KERNELS = ("auto", "triton", "torch")


def resolve_device(device: str) -> str:
    """`auto` is CUDA when one is visible (ROCm builds of torch report through the same API), else CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_kernels_name(kernels: str) -> None:
    if kernels not in KERNELS:
        raise UserError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")


def resolve_kernels(kernels: str, device: str) -> str:
    """'triton' or 'torch'. `auto` is Triton on a GPU with triton installed, torch elsewhere (the interpreter
    is for tests, never chosen by `auto`); `triton` where the kernels cannot run is a UserError."""
    from posttrain.kernels import triton_problem

    check_kernels_name(kernels)
    resolved = resolve_device(device)
    if kernels == "auto":
        return "triton" if resolved == "cuda" and triton_problem(resolved) is None else "torch"
    if kernels == "triton" and (problem := triton_problem(resolved)) is not None:
        raise UserError(f"kernels=triton {problem}")
    return kernels
