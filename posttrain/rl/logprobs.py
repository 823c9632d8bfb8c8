"""Per-token log-probs and entropies of the tokens that are scored, and nothing more.

Three savings over "run the model, take all logits":

* **Only the scored positions reach the LM head.** The hidden state at t predicts token t + 1; the head,
  temperature and log-softmax run on the positions whose next token is scored (`score_mask`), as one flat
  `[tokens, H]` matrix.
* **A memory budget decides chunking.** When the `[tokens, V]` fp32 logits fit in `logits_budget_mb`, the
  head runs once, and autograd keeps its logits. Above it, the head runs over chunks of tokens that fit, each
  checkpointed so its logits are rebuilt during backward: peak memory then grows with the chunk, not with
  `tokens × V` (ZAYA1's vocabulary is 262k).
* **Shared prefixes run once** (`share_prefixes`). The G samples of a prompt repeat its tokens; the positions
  before a row's first scored one are context only. Rows whose context is identical (same tokens, same
  replayed routing) share one forward of it, whose KV cache (ZAYA's CCA conv and value states included) is
  expanded to their rows; each row then runs only its own tokens on top, up to its last scored position.
  It is used when it moves fewer tokens through the model than one padded pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from posttrain.rl.router_replay import replay_routing

LOGITS_BUDGET_MB = 256.0
SHARE_WHEN_BELOW = 0.8  # share prefixes when that runs at most this fraction of the padded pass's tokens


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


def _forward(base: nn.Module, routing: torch.Tensor | None, **inputs):
    """One base forward, routing replayed where `routing` >= 0."""
    if routing is None:
        return base(**inputs)
    with replay_routing(base, routing):
        return base(**inputs)


def _padded_hidden(base, input_ids, attention_mask, rows, cols, routing, trim: bool) -> torch.Tensor:
    """Hidden states at (rows, cols) from one right-padded pass (trimmed after the last needed column)."""
    width = int(cols.max()) + 1 if trim and cols.numel() else input_ids.shape[1]
    part = routing[:, :width] if routing is not None else None
    out = _forward(base, part, input_ids=input_ids[:, :width], attention_mask=attention_mask[:, :width])
    return out.last_hidden_state[rows, cols]


def _shared_prefix_hidden(base, input_ids, attention_mask, needed, routing) -> torch.Tensor | None:
    """Hidden states at needed.nonzero() with one forward per distinct context, or None when that saves too little.

    Row b's context is input_ids[b, :first_b] (first_b: its first needed position); contexts are left-padded
    and run once each with a cache, the cache is expanded to the rows, and each row runs
    input_ids[b, first_b : last_b + 1] on top (right-padded), with positions continuing from its context.
    """
    live = needed.any(1).nonzero().squeeze(1)
    if live.numel() == 0:
        return None
    first = needed[live].float().argmax(1)
    last = needed.shape[1] - 1 - needed[live].flip(1).float().argmax(1)
    if int(first.min()) == 0:  # a row without context: nothing to share
        return None
    keys: dict[bytes, int] = {}
    owner = []
    for row, start in zip(live.tolist(), first.tolist(), strict=True):
        key = input_ids[row, :start].cpu().numpy().tobytes()
        if routing is not None:
            key += routing[row, :start].cpu().numpy().tobytes()
        owner.append(keys.setdefault(key, len(keys)))
    owner_t = torch.tensor(owner, dtype=torch.long)
    firsts: dict[int, int] = {}
    for index, context in enumerate(owner):
        firsts.setdefault(context, index)
    distinct = torch.tensor(list(firsts.values()), dtype=torch.long)  # one row per context, in context order
    spans = (last - first + 1).cpu()
    prefix_width, suffix_width = int(first.max()), int(spans.max())
    shared = len(keys) * prefix_width + len(live) * suffix_width
    if shared > SHARE_WHEN_BELOW * len(live) * (int(last.max()) + 1):
        return None
    device = input_ids.device
    rep = live[distinct].to(device)
    lengths = first[distinct].to(device)
    # contexts left-padded to prefix_width: column j of context u holds its token j - (prefix_width - length_u)
    shift = (prefix_width - lengths)[:, None]
    source = (torch.arange(prefix_width, device=device)[None, :] - shift).clamp(min=0)
    prefix_mask = (torch.arange(prefix_width, device=device)[None, :] >= shift).long()
    prefix_ids = input_ids[rep[:, None], source] * prefix_mask
    prefix_routing = None
    if routing is not None:
        prefix_routing = routing[rep[:, None], source].masked_fill(~prefix_mask.bool()[..., None], -1)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    cache = _forward(
        base, prefix_routing, input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=positions, use_cache=True
    ).past_key_values
    cache.reorder_cache(owner_t.to(device))
    # each row's own tokens, right-padded to suffix_width
    offsets = torch.arange(suffix_width, device=device)[None, :]
    inside = offsets < spans.to(device)[:, None]
    columns = (first.to(device)[:, None] + offsets).clamp(max=input_ids.shape[1] - 1)
    rows = live.to(device)[:, None]
    suffix_ids = input_ids[rows, columns] * inside
    suffix_mask = inside.long()
    suffix_routing = routing[rows, columns].masked_fill(~inside[..., None], -1) if routing is not None else None
    hidden = _forward(
        base,
        suffix_routing,
        input_ids=suffix_ids,
        attention_mask=torch.cat([prefix_mask[owner_t.to(device)], suffix_mask], dim=1),
        position_ids=first.to(device)[:, None] + offsets,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    # needed (row, col) -> (index of the row among live rows, col - first)
    where = torch.full((needed.shape[0],), -1, dtype=torch.long, device=device)
    where[live.to(device)] = torch.arange(len(live), device=device)
    rows_n, cols_n = needed.nonzero(as_tuple=True)
    index = where[rows_n]
    return hidden[index, cols_n - first.to(device)[index]]


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
    share_prefixes: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log π(input_ids[t] | input_ids[<t]) for every scored t, as [B, L] aligned with input_ids (0 elsewhere).

    Right-padded rows. A token is scored when it is real (`attention_mask`) and, given `score_mask` [B, L], marked
    there; t = 0 never is. `temperature` is one value, or one per row ([B]: each sample scored at the temperature
    it was drawn with). The entropy (of softmax(logits / T) at the step that produced token t) is returned
    detached: a diagnostic, not a loss term. `chunk_size` fixes the tokens per LM-head chunk; by default the
    `logits_budget_mb` chooses it. `kernels` is a resolved backend (`posttrain.devices.resolve_kernels`):
    'triton' runs the head through the fused Triton kernel. `routing` [B, L, layers] is replayed (router
    replay, −1 = live). `share_prefixes` lets rows share the forward of an identical context; without it the
    model runs one plain pass over all of [B, L] (what a hook that counts every token, e.g. router balancing,
    expects).
    """
    base, head = split_base_and_head(model)
    size, length = input_ids.shape
    targets_real = attention_mask[:, 1:] > 0
    if score_mask is not None:
        targets_real = targets_real & (score_mask[:, 1:] > 0)
    needed = torch.zeros(size, length, dtype=torch.bool, device=input_ids.device)
    needed[:, :-1] = targets_real  # hidden[:, t] predicts input_ids[:, t + 1]
    rows, cols = needed.nonzero(as_tuple=True)
    hidden = None
    if share_prefixes:
        hidden = _shared_prefix_hidden(base, input_ids, attention_mask, needed, routing)
    if hidden is None:
        hidden = _padded_hidden(base, input_ids, attention_mask, rows, cols, routing, trim=share_prefixes)
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.to(hidden.device, torch.float32).reshape(size)[rows]
    chunk = chunk_size or chunk_tokens(len(rows), head.weight.shape[0], logits_budget_mb)
    picked, ent = _head_logprobs(head, hidden, input_ids[rows, cols + 1], temperature, with_entropy, chunk, kernels)
    logps = hidden.new_zeros(size, length, dtype=torch.float32).index_put((rows, cols + 1), picked)
    entropy = None
    if with_entropy:
        entropy = hidden.new_zeros(size, length, dtype=torch.float32).index_put((rows, cols + 1), ent)
    return logps, entropy
