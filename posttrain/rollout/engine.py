"""Generation engines behind one small interface, and `hf`, the transformers implementation.

The fleet and Markovian RSA only see `Engine.generate(prompts, params, seeds) -> list[Completion]`, so a
`vllm` engine can be registered on GPUs later without touching them. Row i samples from its own stream,
seeded by `seeds[i]`, so a sample never depends on its batch. Every engine returns the behaviour log-prob of
each sampled token under softmax(logits / temperature), with no top-k/top-p truncation: exactly what the
learner recomputes, so the importance ratio starts at 1. Engines also account for the
longest sequence any of their forward passes held, which is how the bounded context of Markovian RSA is
checked rather than assumed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from posttrain.devices import resolve_device
from posttrain.models.router_balancing import find_routers
from posttrain.rollout.decoding import decode
from posttrain.rollout.sampling import SeededSampler, fill_seeds
from posttrain.rollout.types import Completion, SamplingParams, TokenScores

ENGINES: dict[str, type[Engine]] = {}


class ContextOverflowError(ValueError):
    """A prompt does not fit in the model's context; prompts are never silently truncated."""


def register_engine(name: str) -> Callable[[type[Engine]], type[Engine]]:
    def add(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        ENGINES[name] = cls
        return cls

    return add


class Engine(ABC):
    """Generates completions for token-id prompts; holds one copy of the policy."""

    name: ClassVar[str]
    tokenizer: PreTrainedTokenizerBase

    def __init__(self) -> None:
        self.max_context_seen = 0

    @classmethod
    @abstractmethod
    def load(cls, model_path: str, *, seed: int, dtype: str, device: str) -> Engine:
        """Build the engine from `model.path` (a preset or an HF directory)."""

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        """Why this engine cannot run on `device` (a resolved device) here, or None; checked before any work."""
        return None

    @abstractmethod
    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[Completion]:
        """One completion per prompt, in order; prompt i samples from the stream seeded by `seeds[i]`
        (a missing seed is drawn from torch's global RNG)."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the policy weights (weight sync from the learner)."""

    @property
    @abstractmethod
    def context_limit(self) -> int | None:
        """Most tokens (prompt + completion) one sequence may hold, or None when unknown."""

    def check_prompt_lengths(self, lengths: Sequence[int]) -> None:
        limit = self.context_limit
        if limit is not None and lengths and max(lengths) >= limit:
            raise ContextOverflowError(
                f"a prompt of {max(lengths)} tokens does not fit the model's context of {limit} tokens"
            )

    def checked_request(
        self, prompts: Sequence[Sequence[int]], seeds: Sequence[int | None] | None
    ) -> tuple[list[int], list[int]]:
        """(prompt lengths, one seed per prompt) of a non-empty `generate` call, after the checks every engine
        makes: no empty prompt, every prompt within the context."""
        lengths = [len(p) for p in prompts]
        if min(lengths) == 0:
            raise ValueError("empty prompt: a prompt needs at least one token")
        self.check_prompt_lengths(lengths)
        return lengths, fill_seeds(seeds, len(prompts))

    def reset_accounting(self) -> None:
        self.max_context_seen = 0

    def score(
        self, sequences: Sequence[Sequence[int]], *, temperature: float = 1.0, top_logprobs: int = 0
    ) -> list[TokenScores]:
        """Log-prob of every token given its prefix, under softmax(logits / temperature), one entry per sequence.

        Prompt log-likelihoods (lm-eval's `echo` requests) need this; engines that cannot score leave it out.
        """
        raise NotImplementedError(f"the {self.name!r} engine cannot score sequences")


def build_engine(name: str, model_path: str, *, seed: int = 0, dtype: str = "float32", device: str = "auto") -> Engine:
    check_engine(name, device)
    return ENGINES[name].load(model_path, seed=seed, dtype=dtype, device=device)


def check_engine(name: str, device: str = "auto") -> None:
    """`rollout.engine` must name a registered engine that can run here (vllm needs vLLM and a GPU); checked
    when a command starts, before any work."""
    from posttrain.errors import require

    require(name in ENGINES, f"rollout.engine must be one of {', '.join(sorted(ENGINES))}, got {name!r}")
    problem = ENGINES[name].unavailable(resolve_device(device))
    require(problem is None, f"rollout.engine={name} {problem}")


def _stop_index(tokenizer: PreTrainedTokenizerBase, ids: list[int], stops: Sequence[str]) -> int | None:
    """Fewest leading tokens whose text contains a stop string (binary search: containment is monotone)."""

    def contains(count: int) -> bool:
        text = tokenizer.decode(ids[:count], skip_special_tokens=True)
        return any(stop in text for stop in stops)

    if not stops or not ids or not contains(len(ids)):
        return None
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        if contains(middle):
            high = middle
        else:
            low = middle + 1
    return low


@register_engine("hf")
class HFEngine(Engine):
    """Incremental decoding over a transformers model's cache (`posttrain.rollout.decoding`); CPU or GPU.

    With a ZAYA model (routers with balancing biases) every completion carries its routing, for router replay.
    """

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase, device: str = "auto") -> None:
        super().__init__()
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = sorted({*eos, *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.records_routing = bool(find_routers(self.model))

    @classmethod
    def load(cls, model_path: str, *, seed: int, dtype: str, device: str) -> HFEngine:
        from posttrain.models import load_model

        model, tokenizer = load_model(model_path, seed=seed, dtype=getattr(torch, dtype))
        return cls(model, tokenizer, device)

    @property
    def context_limit(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[Completion]:
        if not prompts:
            return []
        lengths, seeds = self.checked_request(prompts, seeds)
        limit = self.context_limit
        max_new = params.max_new_tokens if limit is None else min(params.max_new_tokens, limit - max(lengths))
        decoded = decode(
            self.model,
            prompts,
            SeededSampler(params, seeds, max_new, self.device),
            max_new_tokens=max_new,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            stop=self._stop_check(params.stop),
            record_routing=self.records_routing,
        )
        self.max_context_seen = max(self.max_context_seen, decoded.longest)
        routing = decoded.routing or [None] * len(prompts)
        return [
            self._completion(ids, logprobs, params, routes)
            for ids, logprobs, routes in zip(decoded.tokens, decoded.logprobs, routing, strict=True)
        ]

    def _stop_check(self, stops: Sequence[str]) -> Callable[[list[int]], bool] | None:
        """Whether a row's text now contains a stop string: its last few tokens are decoded each step, and a hit
        is confirmed on the whole row (a missed hit only costs extra tokens: `_completion` cuts exactly)."""
        if not stops:
            return None
        window = max(len(stop) for stop in stops) + 4  # a token decodes to at least one character

        def stopped(ids: list[int]) -> bool:
            tail = self.tokenizer.decode(ids[-window:], skip_special_tokens=True)
            if not any(stop in tail for stop in stops):
                return False
            return any(stop in self.tokenizer.decode(ids, skip_special_tokens=True) for stop in stops)

        return stopped

    def _completion(
        self, ids: list[int], logprobs: list[float], params: SamplingParams, routing: np.ndarray | None = None
    ) -> Completion:
        """Cut a drawn row at its first EOS (kept) or stop string (kept)."""
        end, reason = len(ids), "length"
        for index, token in enumerate(ids):
            if token in self.eos_ids:
                end, reason = index + 1, "eos"
                break
        stop_end = _stop_index(self.tokenizer, ids[:end], params.stop)
        if stop_end is not None:
            end, reason = stop_end, "stop"
        kept = ids[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        routes = routing[:end] if routing is not None else None
        return Completion(token_ids=kept, text=text, logprobs=logprobs[:end], finish_reason=reason, routing=routes)

    @torch.no_grad()
    def score(
        self, sequences: Sequence[Sequence[int]], *, temperature: float = 1.0, top_logprobs: int = 0
    ) -> list[TokenScores]:
        """The learner's own teacher-forced log-probs (`token_logprobs`), on right-padded rows."""
        from posttrain.rl.logprobs import token_logprobs

        if not sequences:
            return []
        lengths = [len(s) for s in sequences]
        if min(lengths) == 0:
            raise ValueError("empty sequence: scoring needs at least one token")
        limit = self.context_limit
        if limit is not None and max(lengths) > limit:
            raise ContextOverflowError(
                f"a sequence of {max(lengths)} tokens does not fit the model's context of {limit} tokens"
            )
        temperature = temperature if temperature > 0 else 1.0  # greedy scores at temperature 1, as generate does
        width = max(lengths)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
            attention[row, : len(sequence)] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        picked, _ = token_logprobs(self.model, input_ids, attention, temperature=temperature)
        top = None
        if top_logprobs and width > 1:
            top = _top_logprobs(self.model, input_ids, attention, top_logprobs, temperature)
        self.max_context_seen = max(self.max_context_seen, width)
        scores = []
        for row, (sequence, length) in enumerate(zip(sequences, lengths, strict=True)):
            logprobs = picked[row, 1:length].tolist()
            alternatives = [[] for _ in logprobs] if top is None else _pairs(top, row, sequence, logprobs)
            scores.append(TokenScores(logprobs=logprobs, top=alternatives))
        return scores


def _top_logprobs(
    model: Any, input_ids: torch.Tensor, attention: torch.Tensor, k: int, temperature: float, chunk_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, ids), each [B, L - 1, k]: the k most likely next tokens after each prefix, chunked over
    positions so that only chunk × vocab logits exist at a time."""
    from posttrain.rl.logprobs import split_base_and_head

    base, head = split_base_and_head(model)
    hidden = base(input_ids=input_ids, attention_mask=attention).last_hidden_state[:, :-1]
    values, ids = [], []
    for start in range(0, hidden.shape[1], chunk_size):
        logprobs = torch.log_softmax(head(hidden[:, start : start + chunk_size]).float() / temperature, dim=-1)
        chunk = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)
        values.append(chunk.values.cpu())
        ids.append(chunk.indices.cpu())
    return torch.cat(values, dim=1), torch.cat(ids, dim=1)


def _pairs(
    top: tuple[torch.Tensor, torch.Tensor], row: int, sequence: Sequence[int], logprobs: list[float]
) -> list[list[tuple[int, float]]]:
    """Alternatives per position; the scored token, when among them, carries exactly its own log-prob (clients
    such as lm-eval test `logprob == max(alternatives)` to call a continuation greedy)."""
    count = len(logprobs)
    values, ids = top[0][row, :count].tolist(), top[1][row, :count].tolist()
    return [
        [(i, logprobs[t] if i == sequence[t + 1] else v) for i, v in zip(ids[t], values[t], strict=True)]
        for t in range(count)
    ]


from posttrain.rollout import vllm_engine  # noqa: E402, F401  (registers "vllm"; it imports vLLM only when used)
