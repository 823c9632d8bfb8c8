"""Per-token log-probs and entropies of the tokens that are scored, and nothing more.

Three savings over "run the model, take all logits":

* **Only the scored positions reach the LM head.** The hidden state at t predicts token t + 1; the head,
  temperature and log-softmax run on the positions whose next token is scored (`score_mask`), as one flat
  `[tokens, H]` matrix.
* **A memory budget decides chunking.** When the `[tokens, V]` fp32 logits fit in `logits_budget_mb`, the
  head runs once, and autograd keeps its logits. Above it, the head runs over chunks of tokens that fit, each
  checkpointed so its logits are rebuilt during backward: peak memory then grows with the chunk, not with
  `tokens × V` (ZAYA1's vocabulary is 262k).
* **Packed forwards** (`pack`, posttrain.rl.packing): rows are cut into length buckets, and within a bucket
  the G samples of a prompt share one forward of their common context, its KV cache expanded to their rows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from posttrain.rl.packing import packed_hidden, padded_hidden

LOGITS_BUDGET_MB = 256.0


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
    """hidden [..., H], targets [...], temperature a float or broadcastable to [..., 1] -> ([...], [...] | None)."""
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


def chunk_tokens(tokens: int, vocab: int, budget_mb: float) -> int:
    """Tokens per LM-head chunk: all of them when their fp32 logits fit in `budget_mb`, else as many as fit."""
    fit = int(budget_mb * 2**20) // (4 * vocab)
    return max(1, min(tokens, fit)) if tokens else 1


def _head_logprobs(head, hidden, targets, temperature, entropy: bool, chunk: int, kernels: str):
    """Flat hidden [N, H] -> (log-probs [N], entropies [N] | None), `chunk` tokens at a time."""
    fused = _fused_chunk_fn(head, kernels)
    picked, ents = [], []
    for start in range(0, hidden.shape[0], chunk):
        part = slice(start, start + chunk)
        temp = temperature[part, None] if isinstance(temperature, torch.Tensor) else temperature
        if fused is not None:
            temp = temp[:, :, None] if isinstance(temp, torch.Tensor) else temp
            got, ent = fused(head, hidden[part, None], targets[part, None], temp, entropy)
            got, ent = got[:, 0], (ent[:, 0] if ent is not None else None)
        elif chunk < hidden.shape[0] and torch.is_grad_enabled() and hidden.requires_grad:
            args = (head, hidden[part], targets[part], temp, entropy)
            got, ent = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            got, ent = _chunk_logprobs(head, hidden[part], targets[part], temp, entropy)
        picked.append(got)
        ents.append(ent)
    if not picked:
        return hidden.new_zeros(0, dtype=torch.float32), (hidden.new_zeros(0) if entropy else None)
    return torch.cat(picked), (torch.cat(ents).detach() if entropy else None)


def token_logprobs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    score_mask: torch.Tensor | None = None,
    with_entropy: bool = False,
    kernels: str = "torch",
    chunk_size: int | None = None,
    logits_budget_mb: float = LOGITS_BUDGET_MB,
    routing: torch.Tensor | None = None,
    pack: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(input_ids[t] | input_ids[<t]) for every scored t, as [B, L] aligned with input_ids (0 elsewhere).

    Right-padded rows. A token is scored when it is real (`attention_mask`) and, given `score_mask` [B, L], marked
    there; t = 0 never is. `temperature` is one value, or one per row ([B]: each sample scored at the temperature
    it was drawn with). The entropy (of softmax(logits / T) at the step that produced token t) is returned
    detached: a diagnostic, not a loss term. `chunk_size` fixes the tokens per LM-head chunk; by default the
    `logits_budget_mb` chooses it. `kernels` is a resolved backend (`posttrain.devices.resolve_kernels`):
    'triton' runs the head through the fused Triton kernel. `routing` [B, L, layers] is replayed (router
    replay, −1 = live). `pack` runs the body in length buckets with shared contexts (posttrain.rl.packing);
    without it the body runs one plain pass over all of [B, L] (what a hook that counts every token, e.g.
    router balancing, expects).
    """
    base, head = split_base_and_head(model)
    size, length = input_ids.shape
    targets_real = attention_mask[:, 1:] > 0
    if score_mask is not None:
        targets_real = targets_real & (score_mask[:, 1:] > 0)
    needed = torch.zeros(size, length, dtype=torch.bool, device=input_ids.device)
    needed[:, :-1] = targets_real  # hidden[:, t] predicts input_ids[:, t + 1]
    rows, cols = needed.nonzero(as_tuple=True)
    if pack:
        hidden = packed_hidden(base, input_ids, attention_mask, needed, routing)
    else:
        hidden = padded_hidden(base, input_ids, attention_mask, needed, routing, trim=False)
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(hidden.device, torch.float32).reshape(size)[rows]
    chunk = chunk_size or chunk_tokens(len(rows), head.weight.shape[0], logits_budget_mb)
    picked, ent = _head_logprobs(head, hidden, input_ids[rows, cols + 1], temperature, with_entropy, chunk, kernels)
    logps = hidden.new_zeros(size, length, dtype=torch.float32).index_put((rows, cols + 1), picked)
    entropy = None
    if with_entropy:
        entropy = hidden.new_zeros(size, length, dtype=torch.float32).index_put((rows, cols + 1), ent)
    return logps, entropy
