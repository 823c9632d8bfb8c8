"""Which forwards the model's body runs to get the hidden states `token_logprobs` needs, over which tokens.

A position is needed when the token after it is scored. One padded pass over right-padded rows runs B × L
tokens; `packed_hidden` runs fewer:

* **Length buckets.** Rows are sorted by where their last needed position ends and cut into buckets, each
  padded only to its own longest row (completions of an RL batch vary from a few tokens to the budget).
* **Shared contexts.** The positions before a row's first needed one are context only, and the G samples of
  a prompt have the same context. Within a bucket, rows with an identical context (same tokens and, under
  router replay, the same recorded routing) can share one forward of it: contexts are left-padded and run
  with a cache, the cache (ZAYA's CCA conv and value states included, via `Cache.reorder_cache`) is
  expanded to the rows, and each row runs its own tokens on top, from its first to its last needed
  position, right-padded, its positions continuing from its context.

A cost in tokens chooses the cuts and, per bucket, sharing or one padded pass (trimmed after its last
needed position): a bucket costs the tokens it runs plus FORWARD_COST_TOKENS per forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from posttrain.rl.router_replay import replay_routing

# What one forward + backward costs besides its tokens, in tokens: zaya-tiny on the 2-core CPU measured
# 34 ms for 1 x 8 tokens against 0.18 ms per token in a 64 x 64 batch.
FORWARD_COST_TOKENS = 192
MAX_CUTS = 16  # candidate bucket boundaries (quantiles of the sorted rows)


def forward(base: nn.Module, routing: torch.Tensor | None, **inputs):
    """One base forward, routing replayed where `routing` >= 0."""
    if routing is None:
        return base(**inputs)
    with replay_routing(base, routing):
        return base(**inputs)


def padded_hidden(base, input_ids, attention_mask, needed, routing, *, trim: bool) -> torch.Tensor:
    """Hidden states at needed.nonzero() from one pass over the rows (trimmed after the last needed column)."""
    rows, cols = needed.nonzero(as_tuple=True)
    width = int(cols.max()) + 1 if trim and cols.numel() else input_ids.shape[1]
    part = routing[:, :width] if routing is not None else None
    out = forward(base, part, input_ids=input_ids[:, :width], attention_mask=attention_mask[:, :width])
    return out.last_hidden_state[rows, cols]


def shared_hidden(base, input_ids, attention_mask, needed, routing, owner: list[int]) -> torch.Tensor:
    """Hidden states at needed.nonzero() with one forward per context; row b's context is owner[b].

    Every row has a needed position, and a context of at least one token (its first needed position > 0)."""
    device = input_ids.device
    first = needed.float().argmax(1)
    spans = needed.shape[1] - needed.flip(1).float().argmax(1) - first  # first .. last needed position
    owner_t = torch.tensor(owner, dtype=torch.long, device=device)
    firsts: dict[int, int] = {}
    for row, context in enumerate(owner):
        firsts.setdefault(context, row)
    rep = torch.tensor(list(firsts.values()), dtype=torch.long, device=device)  # a row per context, in order
    lengths = first[rep]
    width = int(lengths.max())
    # contexts left-padded to `width`: column j of context u holds its token j - (width - length_u)
    shift = (width - lengths)[:, None]
    columns = torch.arange(width, device=device)[None, :]
    source = (columns - shift).clamp(min=0)
    prefix_mask = (columns >= shift).long()
    prefix_ids = input_ids[rep[:, None], source] * prefix_mask
    prefix_routing = None
    if routing is not None:
        prefix_routing = routing[rep[:, None], source].masked_fill(~prefix_mask.bool()[..., None], -1)
    cache = forward(
        base,
        prefix_routing,
        input_ids=prefix_ids,
        attention_mask=prefix_mask,
        position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
    ).past_key_values
    cache.reorder_cache(owner_t)
    # each row's own tokens, right-padded
    offsets = torch.arange(int(spans.max()), device=device)[None, :]
    inside = offsets < spans[:, None]
    cols = (first[:, None] + offsets).clamp(max=input_ids.shape[1] - 1)
    rows = torch.arange(len(owner), device=device)[:, None]
    suffix_routing = routing[rows, cols].masked_fill(~inside[..., None], -1) if routing is not None else None
    hidden = forward(
        base,
        suffix_routing,
        input_ids=input_ids[rows, cols] * inside,
        attention_mask=torch.cat([prefix_mask[owner_t], inside.long()], dim=1),
        position_ids=first[:, None] + offsets,
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    rows_n, cols_n = needed.nonzero(as_tuple=True)
    return hidden[rows_n, cols_n - first[rows_n]]


@dataclass(frozen=True)
class Bucket:
    rows: list[int]  # batch rows, by increasing end
    shared: bool  # run with shared contexts (else one trimmed padded pass)
    owner: list[int]  # per row, its context's index within the bucket (shared buckets)


def plan(first: list[int], end: list[int], keys: list[bytes | None]) -> list[Bucket]:
    """Cut rows (given per row: first needed position, last needed position + 1, context key or None when it
    cannot share) into buckets of least cost, choosing the cuts among MAX_CUTS quantiles of the sorted rows."""
    order = sorted(range(len(end)), key=lambda r: end[r])
    count = len(order)
    cuts = sorted({0, count, *(round(k * count / MAX_CUTS) for k in range(1, MAX_CUTS))})

    def cost(lo: int, hi: int) -> tuple[float, Bucket]:
        rows = order[lo:hi]
        padded = len(rows) * max(end[r] for r in rows) + FORWARD_COST_TOKENS
        if any(keys[r] is None for r in rows):
            return padded, Bucket(rows, False, [])
        contexts: dict[bytes, int] = {}
        owner = [contexts.setdefault(keys[r], len(contexts)) for r in rows]
        span = max(end[r] - first[r] for r in rows)
        shared = len(contexts) * max(first[r] for r in rows) + len(rows) * span + 2 * FORWARD_COST_TOKENS
        return (shared, Bucket(rows, True, owner)) if shared < padded else (padded, Bucket(rows, False, []))

    best: dict[int, tuple[float, list[Bucket]]] = {0: (0.0, [])}
    for j, hi in enumerate(cuts[1:], start=1):
        options = []
        for lo in cuts[:j]:
            spent, buckets = best[lo]
            extra, bucket = cost(lo, hi)
            options.append((spent + extra, [*buckets, bucket]))
        best[hi] = min(options, key=lambda option: option[0])
    return best[count][1]


def packed_hidden(base, input_ids, attention_mask, needed, routing) -> torch.Tensor:
    """Hidden states at needed.nonzero() (row-major), from the forwards `plan` chooses."""
    live = needed.any(1).nonzero().squeeze(1).tolist()
    if not live:
        return padded_hidden(base, input_ids, attention_mask, needed, routing, trim=True)
    rows_needed = needed[live]
    first = rows_needed.float().argmax(1).tolist()
    end = (needed.shape[1] - rows_needed.flip(1).float().argmax(1)).tolist()
    keys: list[bytes | None] = []
    for row, start in zip(live, first, strict=True):
        key = input_ids[row, :start].cpu().numpy().tobytes() if start > 0 else None
        if key is not None and routing is not None:
            key += routing[row, :start].cpu().numpy().tobytes()
        keys.append(key)
    slot = torch.full(needed.shape, -1, dtype=torch.long, device=needed.device)
    slot[needed] = torch.arange(int(needed.sum()), device=needed.device)
    pieces, slots = [], []
    for bucket in plan(first, end, keys):
        rows = torch.tensor([live[i] for i in bucket.rows], dtype=torch.long, device=input_ids.device)
        sub = needed[rows]
        part = routing[rows] if routing is not None else None
        if bucket.shared:
            pieces.append(shared_hidden(base, input_ids[rows], attention_mask[rows], sub, part, bucket.owner))
        else:
            pieces.append(padded_hidden(base, input_ids[rows], attention_mask[rows], sub, part, trim=True))
        slots.append(slot[rows][sub])
    return torch.cat(pieces)[torch.cat(slots).argsort()]
