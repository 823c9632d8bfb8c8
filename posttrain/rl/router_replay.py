"""Router replay for ZAYA: reuse the rollout's expert choices in the training forward.

A MoE policy's routing can flip between the rollout engine and the trainer (different kernels, batch
shapes, or weights one step apart); the token then sees another expert and its log-prob ratio is noise.
Replay pins the choice: `record_routing` captures, per layer, the class (expert, or E for skip) each
token went to, and `replay_routing` makes every router return those classes, with the gate weight still
softmax(logits)[class] of the *current* router, so gradients reach the router exactly as in ZAYA's own
forward. Both work through forward hooks on transformers' ZayaRouter; the model code is untouched.

Layout: routing is [B, L, num_layers] long, aligned with input_ids; −1 marks positions to route live.
The `hf` engine records, for every sampled token, the classes of the forward that produced it (the
position of the token before it); `batch_routing` lays a batch of those recordings out this way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from posttrain.models.router_balancing import find_routers


def routed_classes(router: nn.Module, router_logits: torch.Tensor) -> torch.Tensor:
    """The classes a router picked, [tokens, top_k], recomputed exactly as ZAYA does from its logits."""
    probs = torch.softmax(router_logits.detach(), dim=-1).to(torch.float32)
    return torch.topk(probs + router.balancing_biases, router.top_k, dim=-1).indices


def batch_routing(
    prompt_lengths: Sequence[int], routings: Sequence[np.ndarray | None], width: int
) -> torch.Tensor | None:
    """[B, width, layers] routing of right-padded prompt + completion rows from per-completion recordings.

    Recording i ([completion tokens, layers]) lands on positions P_i − 1 ... P_i + n_i − 2, the inputs whose
    forwards produced the completion's tokens; everything else is −1. None when nothing was recorded."""
    recorded = [r for r in routings if r is not None]
    if not recorded:
        return None
    layers = recorded[0].shape[1]
    out = torch.full((len(routings), width, layers), -1, dtype=torch.long)
    for row, (prompt, routing) in enumerate(zip(prompt_lengths, routings, strict=True)):
        if routing is not None and len(routing):
            out[row, prompt - 1 : prompt - 1 + len(routing)] = torch.from_numpy(routing.astype(np.int64))
    return out


def _top1_routers(model: nn.Module) -> list[nn.Module]:
    routers = find_routers(model)
    if not routers:
        raise ValueError(f"{type(model).__name__} has no routers to record or replay")
    if any(r.top_k != 1 for r in routers):
        raise ValueError("router replay supports top-1 routing only (ZAYA requires num_experts_per_tok = 1)")
    return routers


@contextmanager
def record_routing(model: nn.Module, shape: tuple[int, int]) -> Iterator[torch.Tensor]:
    """Yields a [B, L, layers] tensor filled by the forward run inside the block (one full-sequence forward)."""
    routers = _top1_routers(model)
    device = routers[0].balancing_biases.device
    routing = torch.full((*shape, len(routers)), -1, dtype=torch.long, device=device)

    def hook_for(layer: int):
        def hook(router, _inputs, output) -> None:
            routing[:, :, layer] = routed_classes(router, output[0])[:, 0].reshape(shape)

        return hook

    handles = [r.register_forward_hook(hook_for(i)) for i, r in enumerate(routers)]
    try:
        yield routing
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def replay_routing(model: nn.Module, routing: torch.Tensor) -> Iterator[None]:
    """Forwards inside the block route token t of row b at layer l to routing[b, t, l] (−1: live choice)."""
    routers = _top1_routers(model)
    if routing.dim() != 3 or routing.shape[2] != len(routers):
        raise ValueError(f"routing must be [B, L, {len(routers)}], got {tuple(routing.shape)}")

    def hook_for(layer: int):
        def hook(router, _inputs, output):
            logits, probs, _, next_states = output
            forced = routing[:, :, layer].reshape(-1).to(logits.device)
            classes = torch.where(forced >= 0, forced, routed_classes(router, logits)[:, 0])[:, None]
            weights = torch.softmax(logits, dim=-1).gather(1, classes).to(probs.dtype)
            skip = classes == router.num_experts  # ZAYA's convention: skipped tokens get expert 0 with weight 0
            return logits, weights.masked_fill(skip, 0), classes.masked_fill(skip, 0), next_states

        return hook

    # prepend: other hooks on the routers (load counting) then see the replayed choice
    handles = [r.register_forward_hook(hook_for(i), prepend=True) for i, r in enumerate(routers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
