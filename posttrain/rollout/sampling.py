"""Per-sample seeded sampling, and the behaviour log-prob of every draw.

Each row of a batch draws from its own stream of uniforms, seeded by its request. A sample therefore does not
depend on which other requests share its batch, how a group was cut into chunks, or how many workers ran: two
runs with one seed draw the same samples, and no two samples of a group repeat each other's stream.

`SeededSampler` makes the draw for the live rows of a decoding batch (rows that finished have left it, so each
draw names the streams it uses). It returns log softmax(logits / T) of the drawn token over the full
vocabulary: top-k/top-p decide which token is drawn but never change the recorded log-prob, which is what a
teacher-forced pass at temperature T computes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from posttrain.rollout.types import SamplingParams


def sample_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of names and numbers, e.g. (run seed, step, problem, sample index)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def fill_seeds(seeds: Sequence[int | None] | None, count: int) -> list[int]:
    """`count` seeds: the given ones, and fresh draws from torch's global RNG where a seed is missing."""
    seeds = [None] * count if seeds is None else list(seeds)
    if len(seeds) != count:
        raise ValueError(f"{count} prompts but {len(seeds)} seeds")
    return [int(torch.randint(0, 2**62, ())) if s is None else s for s in seeds]


def truncate(probs: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """`probs` [B, V] with everything outside the top-k and the top-p nucleus set to 0 (the best token always kept)."""
    if top_k > 0 and top_k < probs.shape[-1]:
        kth = probs.topk(top_k, dim=-1).values[:, -1:]
        probs = probs.masked_fill(probs < kth, 0.0)
    if top_p < 1.0:
        ordered, order = probs.sort(dim=-1, descending=True)
        before = ordered.cumsum(-1) - ordered  # mass strictly above each token
        drop = before >= top_p * ordered.sum(-1, keepdim=True)  # keep tokens until the mass above reaches p
        probs = probs.scatter(-1, order, ordered.masked_fill(drop, 0.0))
    return probs


class SeededSampler:
    """Draws row b's t-th token from uniform t of its own stream (seed `seeds[b]`), with its behaviour log-prob."""

    def __init__(self, params: SamplingParams, seeds: Sequence[int], steps: int, device: torch.device | str) -> None:
        self.params = params
        self.scale = params.temperature if params.temperature > 0 else 1.0  # greedy log-probs are at T = 1
        draws = [torch.rand(steps, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
        self.uniforms = torch.stack(draws).to(device) if draws else torch.zeros(0, steps, dtype=torch.float64)
        self.step = 0

    def draw(self, logits: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [R], log-probs [R]) for next-token `logits` [R, V] of the streams `rows` [R]; one step on."""
        logprobs = torch.log_softmax(logits.float() / self.scale, dim=-1)
        if self.params.temperature > 0:
            probs = truncate(logprobs.exp(), self.params.top_p, self.params.top_k)
            cdf = probs.double().cumsum(-1)
            target = self.uniforms[rows.to(self.uniforms.device), self.step, None] * cdf[:, -1:]
            chosen = torch.searchsorted(cdf, target, right=True).clamp_(max=logits.shape[-1] - 1)
        else:
            chosen = logits.argmax(-1, keepdim=True)
        self.step += 1
        return chosen[:, 0], logprobs.gather(1, chosen)[:, 0]
