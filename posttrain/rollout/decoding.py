"""Incremental decoding over the model's own KV cache: the loop behind the `hf` engine.

Why not transformers' `generate`: an RL batch holds G samples of each prompt, and `generate` prefills every
row. Here each distinct prompt is prefilled once and its cache (ZAYA's CCA conv and value states included)
is expanded to its G rows, so a group pays for one prefill. Rows that finished (EOS, or a stop string) leave
the batch, so the remaining steps run on the rows still generating. The per-step work is one forward, the
seeded draw and a few tensor ops.

Positions are counted from each prompt's first real token (left padding is masked and skipped), which is
how a right-padded teacher-forced pass numbers them, so the behaviour log-probs equal the learner's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from posttrain.models.router_balancing import find_routers
from posttrain.rl.router_replay import routed_classes
from posttrain.rollout.sampling import SeededSampler

StopCheck = Callable[[list[int]], bool]  # the row's tokens so far -> has a stop string appeared


@dataclass
class Decoded:
    """Per row: the drawn tokens (up to and including the one that finished it), their behaviour log-probs,
    and with routers the class each layer chose in the forward that produced each token ([tokens, layers])."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    routing: list[np.ndarray] | None  # int16 [tokens, layers]: numpy pickles ~50x faster than tensors to the driver
    longest: int  # most tokens (prompt + generated) any row held


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention) [N, width], prompts aligned on their last token."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        attention[row, width - len(prompt) :] = 1
    return ids, attention


def positions_of(attention: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (pads get 0; they are masked anyway)."""
    return (attention.cumsum(-1) - 1).clamp(min=0)


class _RoutingTap:
    """Keeps, per router, the classes of the last forward's final position ([rows, layers] once read)."""

    def __init__(self, model: nn.Module) -> None:
        self.routers = find_routers(model)
        self.last: list[torch.Tensor | None] = [None] * len(self.routers)
        self.rows = 0

    @contextmanager
    def attached(self):
        def hook_for(layer: int):
            def hook(router, _inputs, output) -> None:
                classes = routed_classes(router, output[0])[:, 0]
                self.last[layer] = classes.view(self.rows, -1)[:, -1]

            return hook

        handles = [r.register_forward_hook(hook_for(i)) for i, r in enumerate(self.routers)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def read(self) -> torch.Tensor:
        return torch.stack(self.last, dim=1).to("cpu", torch.int16)


def _prefill(model: nn.Module, prompts: Sequence[Sequence[int]], pad_id: int, tap: _RoutingTap | None):
    """One forward per distinct prompt, its cache expanded to the prompt's rows.

    Returns (cache, next-token logits [rows, V], attention [rows, width], next positions [rows], classes
    [rows, layers] or None, width)."""
    device = next(model.parameters()).device
    owners: dict[tuple[int, ...], int] = {}
    owner = torch.tensor([owners.setdefault(tuple(p), len(owners)) for p in prompts], dtype=torch.long)
    ids, attention = left_pad(list(owners), pad_id)
    positions = positions_of(attention)
    if tap is not None:
        tap.rows = len(owners)
    out = model(
        input_ids=ids.to(device),
        attention_mask=attention.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        logits_to_keep=1,
    )
    cache, expand = out.past_key_values, owner.to(device)
    if not torch.equal(owner, torch.arange(len(prompts))):
        cache.reorder_cache(expand)  # the rows of a prompt share its prefill
    classes = tap.read()[owner] if tap is not None else None
    next_positions = positions[:, -1].to(device)[expand] + 1
    return cache, out.logits[:, -1][expand], attention.to(device)[expand], next_positions, classes, ids.shape[1]


def decode(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    sampler: SeededSampler,
    *,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    stop: StopCheck | None = None,
    record_routing: bool = False,
) -> Decoded:
    """Sample up to `max_new_tokens` tokens after every prompt; row b draws from `sampler`'s stream b."""
    size = len(prompts)
    tokens: list[list[int]] = [[] for _ in range(size)]
    logprobs: list[list[float]] = [[] for _ in range(size)]
    routes: list[list[list[int]]] = [[] for _ in range(size)]
    tap = _RoutingTap(model) if record_routing else None
    eos = set(eos_ids)
    rows = torch.arange(size)  # the prompt (and stream) of each row still generating
    steps = 0
    with tap.attached() if tap is not None else nullcontext():
        cache, logits, attention, position, classes, width = _prefill(model, prompts, pad_id, tap)
        for step in range(max_new_tokens):
            drawn, drawn_logprobs = sampler.draw(logits, rows)
            steps = step + 1
            live, drawn_ids = rows.tolist(), drawn.tolist()
            finished = [token in eos for token in drawn_ids]
            step_classes = classes.tolist() if classes is not None else None
            for i, (row, token, logprob) in enumerate(zip(live, drawn_ids, drawn_logprobs.tolist(), strict=True)):
                tokens[row].append(token)
                logprobs[row].append(logprob)
                if step_classes is not None:
                    routes[row].append(step_classes[i])
                if stop is not None and not finished[i] and stop(tokens[row]):
                    finished[i] = True
            if step + 1 == max_new_tokens or all(finished):
                break
            if any(finished):  # finished rows leave the batch, their cache rows with them
                keep = torch.tensor([i for i, done in enumerate(finished) if not done], dtype=torch.long)
                rows, keep = rows[keep], keep.to(drawn.device)
                cache.reorder_cache(keep)
                drawn, attention, position = drawn[keep], attention[keep], position[keep]
            attention = torch.cat([attention, attention.new_ones(len(rows), 1)], dim=1)
            if tap is not None:
                tap.rows = len(rows)
            out = model(
                input_ids=drawn[:, None],
                attention_mask=attention,
                position_ids=position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            logits, position = out.logits[:, -1], position + 1
            classes = tap.read() if tap is not None else None
    routing = None
    if tap is not None:
        layers = len(tap.routers)
        routing = [np.array(r, dtype=np.int16).reshape(len(r), layers) for r in routes]
    return Decoded(tokens, logprobs, routing, width + steps)
