"""ZAYA router bias balancing, applied outside autograd after every optimizer step, and expert-load metrics.

A ZAYA router scores E experts plus a compute-free skip class and routes each token to
topk(softmax(logits) + balancing_biases); the biases are a buffer (skip starts at −1) that no gradient
reaches. During the training forward, forward hooks on the routers read the choice the experts run (ZAYA
marks a skipped token with gate weight 0; under router replay this is the replayed choice) and
count, per layer, how many non-pad tokens of the global batch went to each of the E + 1 classes.
After the optimizer step, per layer:

    p_c   = count_c / Σ counts                       (c over the E experts and skip)
    q_e   = p_e / (1 − p_skip)                       (share of the tokens that reached an expert)
    g_e   = q_e − 1/E                                (the balancing "gradient"; > 0 = overloaded)
    b_e  -= lr · m̂_e / (√v̂_e + eps)                  (Adam moments of g, bias-corrected)

Only the E expert biases move. The skip class is measured (`skip_frac`) but its bias is left alone: a
uniform target for it would force a fixed share of tokens to skip compute, and measuring q against
p_e (the literal p_e − 1/E) would make Σ g_e = −p_skip, a steady push on every expert bias that
eventually removes skipping. With no skipped tokens, q_e = p_e and the rule is exactly p_e − 1/E.
Because the step is normalised, the biases move by about lr per step whatever the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def find_routers(model: nn.Module) -> list[nn.Module]:
    """Modules with a `balancing_biases` buffer over E + 1 classes (ZAYA's ZayaRouter), in layer order."""
    return [m for m in model.modules() if isinstance(getattr(m, "balancing_biases", None), torch.Tensor)]


def _normalised_entropy(shares: torch.Tensor, classes: int) -> float:
    """Entropy of the non-zero `shares` over `classes`, 1 for uniform; never −0.0 (one expert takes all)."""
    return max(0.0, float(-(shares * shares.log()).sum() / math.log(classes))) if classes > 1 else 1.0


class RouterBalancer:
    def __init__(self, model: nn.Module, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps=1e-8):
        self.routers = find_routers(model)
        if not self.routers:
            raise ValueError(f"{type(model).__name__} has no routers with balancing biases")
        self.lr, self.betas, self.eps = lr, betas, eps
        classes = self.routers[0].balancing_biases.numel()
        device = self.routers[0].balancing_biases.device
        self.counts = torch.zeros(len(self.routers), classes, dtype=torch.float64, device=device)
        self.exp_avg = torch.zeros(len(self.routers), classes - 1, dtype=torch.float64, device=device)
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = 0
        self._token_mask: torch.Tensor | None = None

    @contextmanager
    def collect(self, attention_mask: torch.Tensor) -> Iterator[None]:
        """Count routing decisions of the forwards run inside; pad tokens (mask 0) are not counted."""
        self._token_mask = attention_mask
        handles = self._router_hooks()
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._token_mask = None

    def attach(self, model: nn.Module) -> Callable[[], None]:
        """Count every training-mode forward of `model` until the returned `detach()` is called.

        For trainers that own the forward (TRL's SFTTrainer): each forward's `attention_mask` argument
        marks the tokens that count (all of them when there is none). Eval-mode forwards are not counted.
        """

        def capture_mask(_module: nn.Module, _args, kwargs: dict) -> None:
            self._token_mask = kwargs.get("attention_mask")

        handles = [model.register_forward_pre_hook(capture_mask, with_kwargs=True), *self._router_hooks(True)]

        def detach() -> None:
            for handle in handles:
                handle.remove()
            self._token_mask = None

        return detach

    def _router_hooks(self, training_only: bool = False) -> list:
        return [r.register_forward_hook(self._hook(i, training_only)) for i, r in enumerate(self.routers)]

    def _hook(self, layer: int, training_only: bool):
        def hook(router: nn.Module, _inputs, output) -> None:
            if training_only and not router.training:
                return
            _, probs, indices, _ = output  # what the experts run (replayed routing included); skip = weight 0
            picked = torch.where(probs == 0, router.num_experts, indices)
            mask = self._token_mask
            if mask is None:
                weights = torch.ones(picked.numel(), dtype=torch.float64, device=self.counts.device)
            else:
                tokens = mask.reshape(-1).to(device=self.counts.device, dtype=torch.float64)
                weights = tokens[:, None].expand(-1, picked.shape[-1]).reshape(-1)
            self.counts[layer].index_add_(0, picked.reshape(-1).to(self.counts.device), weights)

        return hook

    def load_metrics(self) -> dict[str, float]:
        """max_load (largest expert share of expert-routed tokens; 1/E is balanced), load_entropy (of those
        shares, normalised so 1 is uniform) and skip_frac, per layer and averaged over layers."""
        experts = self.counts.shape[1] - 1
        metrics: dict[str, float] = {}
        totals = {"max_load": 0.0, "load_entropy": 0.0, "skip_frac": 0.0}
        for layer, counts in enumerate(self.counts):
            total = float(counts.sum())
            if total == 0:
                continue
            shares = counts[:experts] / counts[:experts].sum().clamp(min=1e-12)
            nonzero = shares[shares > 0]
            values = {
                "max_load": float(shares.max()),
                "load_entropy": _normalised_entropy(nonzero, experts),
                "skip_frac": float(counts[experts]) / total,
            }
            for key, value in values.items():
                metrics[f"router/layer{layer}/{key}"] = value
                totals[key] += value / len(self.routers)
        if metrics:
            metrics.update({f"router/{key}": value for key, value in totals.items()})
        return metrics

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        """Move the expert biases toward balance using the counts since the last step; returns the load
        metrics of those counts. A layer whose tokens all skipped gets a zero "gradient"."""
        metrics = self.load_metrics()
        expert_counts = self.counts[:, :-1]
        reached = expert_counts.sum(-1, keepdim=True)
        if float(reached.sum()) > 0 and self.lr > 0:
            experts = expert_counts.shape[1]
            grad = torch.where(reached > 0, expert_counts / reached.clamp(min=1) - 1.0 / experts, 0.0)
            beta1, beta2 = self.betas
            self.steps += 1
            self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            m_hat = self.exp_avg / (1 - beta1**self.steps)
            v_hat = self.exp_avg_sq / (1 - beta2**self.steps)
            update = self.lr * m_hat / (v_hat.sqrt() + self.eps)
            for router, delta in zip(self.routers, update, strict=True):
                router.balancing_biases[:-1] -= delta.to(router.balancing_biases.dtype)
        self.counts.zero_()
        return metrics

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.cpu(), "exp_avg_sq": self.exp_avg_sq.cpu(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = int(state["steps"])
