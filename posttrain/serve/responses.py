"""OpenAI-shaped response bodies and stream chunks, built from `Generated` completions and `TokenScores`.

Log-probs come from one of two places. Without alternatives they are the engine's own behaviour log-probs
of the sampled tokens; with `top_logprobs` (or an echoed prompt) the whole sequence is scored once more,
teacher-forced, and every reported number comes from that pass, so a sampled token's log-prob always
equals its entry among the alternatives. Both are log softmax(logits / temperature), temperature 1 when
greedy.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from posttrain.rollout.types import TokenScores
from posttrain.serve.text import Generated, ReasoningSplit, token_strings

STREAM_EVENTS_PER_CHOICE = 512  # longer completions stream several tokens per event


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def envelope(kind: str, response_id: str, model: str) -> dict[str, Any]:
    return {"id": response_id, "object": kind, "created": int(time.time()), "model": model}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


@dataclass
class TokenLogprobs:
    """Per-token log-probs of a span of tokens, with alternatives (token id, log-prob) when asked for."""

    ids: list[int]
    logprobs: list[float | None]
    top: list[list[tuple[int, float]] | None] = field(default_factory=list)

    @classmethod
    def of_completion(cls, generated: Generated, prompt_len: int, scores: TokenScores | None) -> TokenLogprobs:
        """The completion's tokens; from `scores` (of prompt + completion) when there are any."""
        if scores is None:
            return cls(generated.token_ids, list(generated.logprobs), [None] * len(generated.token_ids))
        span = slice(prompt_len - 1, prompt_len - 1 + len(generated.token_ids))
        return cls(generated.token_ids, scores.logprobs[span], scores.top[span])

    @classmethod
    def of_prompt(cls, prompt: list[int], scores: TokenScores) -> TokenLogprobs:
        """The prompt's tokens; the first has no log-prob, as nothing comes before it."""
        count = len(prompt) - 1
        return cls(prompt, [None, *scores.logprobs[:count]], [None, *scores.top[:count]])

    def __add__(self, other: TokenLogprobs) -> TokenLogprobs:
        return TokenLogprobs(self.ids + other.ids, self.logprobs + other.logprobs, self.top + other.top)

    def span(self, start: int, end: int) -> TokenLogprobs:
        return TokenLogprobs(self.ids[start:end], self.logprobs[start:end], self.top[start:end])

    def chat(self, tokenizer: Any) -> dict[str, Any]:
        """`{"content": [{token, logprob, bytes, top_logprobs}]}` (chat completions)."""

        def entry(token: str, logprob: float | None) -> dict[str, Any]:
            return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

        content = []
        for token, logprob, top in zip(token_strings(tokenizer, self.ids), self.logprobs, self.top, strict=True):
            alternatives = [entry(s, lp) for s, lp in _named(tokenizer, top or [])]
            content.append(entry(token, logprob) | {"top_logprobs": alternatives})
        return {"content": content}

    def completion(self, tokenizer: Any, *, with_top: bool, offset: int = 0) -> dict[str, Any]:
        """`{tokens, token_logprobs, top_logprobs, text_offset}` (completions; what lm-eval parses)."""
        tokens = token_strings(tokenizer, self.ids)
        offsets = []
        for token in tokens:
            offsets.append(offset)
            offset += len(token)
        top_logprobs = None
        if with_top:
            top_logprobs = [None if top is None else dict(_named(tokenizer, top)) for top in self.top]
        return {"tokens": tokens, "token_logprobs": self.logprobs, "top_logprobs": top_logprobs, "text_offset": offsets}


def _named(tokenizer: Any, pairs: list[tuple[int, float]]) -> list[tuple[str, float]]:
    return list(zip(token_strings(tokenizer, [i for i, _ in pairs]), (lp for _, lp in pairs), strict=True))


def chat_choice(index: int, generated: Generated, logprobs: dict[str, Any] | None) -> dict[str, Any]:
    text = generated.text
    message = ReasoningSplit.of(text).message(text)
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": generated.finish_reason}


def stream_spans(count: int) -> list[tuple[int, int]]:
    """Token ranges of the stream events of one completion: one token each, fewer events when long."""
    step = max(1, -(-count // STREAM_EVENTS_PER_CHOICE))
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def chat_stream_chunks(
    base: dict[str, Any], index: int, generated: Generated, logprobs: TokenLogprobs | None, tokenizer: Any
) -> list[dict[str, Any]]:
    """The content events of one choice (the role event is sent before generation), then its finish event."""
    text = generated.text
    split = ReasoningSplit.of(text)
    chunks, offset = [], 0
    for start, end in stream_spans(len(generated.pieces)):
        width = sum(len(p) for p in generated.pieces[start:end])
        delta = split.delta(text, offset, offset + width)
        offset += width
        piece_logprobs = logprobs.span(start, end).chat(tokenizer) if logprobs is not None else None
        if delta or piece_logprobs:
            choice = {"index": index, "delta": delta, "logprobs": piece_logprobs, "finish_reason": None}
            chunks.append(base | {"choices": [choice]})
    finish = {"index": index, "delta": {}, "logprobs": None, "finish_reason": generated.finish_reason}
    return [*chunks, base | {"choices": [finish]}]


def completion_stream_chunks(
    base: dict[str, Any],
    index: int,
    pieces: list[str],
    finish_reason: str | None,
    logprobs: TokenLogprobs | None,
    tokenizer: Any,
    with_top: bool,
) -> list[dict[str, Any]]:
    chunks, offset = [], 0
    for start, end in stream_spans(len(pieces)):
        text = "".join(pieces[start:end])
        piece_logprobs = None
        if logprobs is not None:
            piece_logprobs = logprobs.span(start, end).completion(tokenizer, with_top=with_top, offset=offset)
        offset += len(text)
        chunks.append(base | {"choices": [text_choice(index, text, piece_logprobs, None)]})
    if finish_reason is not None:
        chunks.append(base | {"choices": [text_choice(index, "", None, finish_reason)]})
    return chunks


def text_choice(index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
