"""What goes into the fleet and what comes out: plain, picklable dataclasses shared by engines and workers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Messages = list[dict[str, str]]
FINISH_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class SamplingParams:
    """How a sample is drawn. Behaviour log-probs are always under softmax(logits / temperature), untruncated."""

    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy (log-probs then use temperature 1)
    top_p: float = 1.0
    top_k: int = 0  # 0 disables top-k
    stop: tuple[str, ...] = ()

    @property
    def scoring_temperature(self) -> float:
        """The temperature the behaviour log-probs are taken at (greedy draws are scored at 1)."""
        return self.temperature if self.temperature > 0 else 1.0


@dataclass(frozen=True)
class Request:
    """One sample to draw. Give `prompt_ids`, or `messages` (rendered with the model's chat template)."""

    id: str
    params: SamplingParams = field(default_factory=SamplingParams)
    prompt_ids: tuple[int, ...] | None = None
    messages: Messages | None = None
    group: int = 0  # GRPO group (prompt index): rollouts of one group share their advantage baseline
    seed: int | None = None  # this sample's random stream (None: drawn from torch's global RNG)

    def __post_init__(self) -> None:
        if (self.prompt_ids is None) == (self.messages is None):
            raise ValueError(f"request {self.id!r}: give exactly one of prompt_ids and messages")


@dataclass
class Completion:
    """An engine's answer for one prompt; `logprobs[i]` belongs to `token_ids[i]`.

    `routing[i, l]` (MoE models) is the class (expert, or E for skip) layer l's router chose in the forward that
    produced token i, i.e. at the position of the token before it: what the learner replays there.
    """

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str  # eos | stop | length
    routing: np.ndarray | None = None  # [len(token_ids), layers] int16


@dataclass
class Rollout:
    """A completed request, tagged with the policy version, the worker and the sampling it was drawn with."""

    request_id: str
    group: int
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    policy_version: int
    worker_id: str
    params: SamplingParams = field(default_factory=SamplingParams)
    routing: np.ndarray | None = None  # [len(completion_ids), layers]: see Completion.routing


@dataclass
class TokenScores:
    """Teacher-forced log-probs of a token sequence: entry t scores token t + 1 given the tokens before it.

    `top[t]` holds the most likely (token id, log-prob) pairs at that position, most likely first; it is
    empty unless the caller asked for alternatives.
    """

    logprobs: list[float]
    top: list[list[tuple[int, float]]]
