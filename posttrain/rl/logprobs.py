"""Per-token log-probs and entropies without materialising [B, L, V] logits.

The model's base runs once to get hidden states [B, L, H]; the LM head, temperature and log-softmax then run
over `chunk_size` positions at a time. Under autograd each chunk is checkpointed, so its logits are
rebuilt during backward instead of being kept: peak memory grows with B·chunk·V, not B·L·V (ZAYA1's
vocabulary is 262k). Chunks holding no scored token are skipped.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel


def split_base_and_head(model: PreTrainedModel) -> tuple[nn.Module, nn.Module]:
    """(decoder that returns normed hidden states, LM head); works for ZAYA, Llama and other HF causal LMs, and
    for a peft model (its LoRA layers live inside the base model's modules)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    head = model.get_output_embeddings()
    base = getattr(model, model.base_model_prefix, None)
    if head is None or base is None or base is model:
        raise TypeError(f"{type(model).__name__} has no separate base model and LM head")
    return base, head


def _chunk_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature, entropy: bool):
    logits = head(hidden).float() / temperature
    log_norm = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets[..., None]).squeeze(-1) - log_norm
    if not entropy:
        return picked, None
    return picked, log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def _fused_chunk_fn(head: nn.Module, kernels: str):
    """kernels='triton': posttrain.kernels' fused LM head + log-softmax, which keeps no logits (no checkpoint)."""
    if kernels != "triton":
        return None
    from posttrain.kernels.linear_logprobs import fused_chunk_logprobs, head_supported

    return fused_chunk_logprobs if head_supported(head) else None


def token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    chunk_size: int = 256,
    score_mask: torch.Tensor | None = None,
    with_entropy: bool = False,
    kernels: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(input_ids[t] | input_ids[<t]) for every t, as [B, L] aligned with input_ids (0 at t = 0).

    `temperature` is one value, or one per row ([B]: each sample scored at the temperature it was drawn with).

    `score_mask` [B, L] limits the work to chunks that contain at least one scored position; other
    positions come back as 0. The entropy (of softmax(logits / T) at the step that produced token t) is
    returned detached: it is a diagnostic, not a loss term. `kernels` is a resolved backend
    (`posttrain.devices.resolve_kernels`): 'triton' runs each chunk through the fused Triton kernel.
    """
    base, head = split_base_and_head(model)
    hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    size, length = input_ids.shape
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(hidden.device, torch.float32).reshape(size, 1, 1)
    logps = hidden.new_zeros(size, length, dtype=torch.float32)
    entropy = hidden.new_zeros(size, length, dtype=torch.float32) if with_entropy else None
    fused = _fused_chunk_fn(head, kernels)
    # hidden[:, t] predicts input_ids[:, t + 1]
    for start in range(0, length - 1, chunk_size):
        stop = min(start + chunk_size, length - 1)
        if score_mask is not None and not score_mask[:, start + 1 : stop + 1].any():
            continue
        args = (head, hidden[:, start:stop], input_ids[:, start + 1 : stop + 1], temperature, with_entropy)
        if fused is not None:
            picked, ent = fused(*args)
        elif torch.is_grad_enabled() and hidden.requires_grad:
            picked, ent = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            picked, ent = _chunk_logprobs(*args)
        logps[:, start + 1 : stop + 1] = picked
        if entropy is not None:
            entropy[:, start + 1 : stop + 1] = ent.detach()
    return logps, entropy
