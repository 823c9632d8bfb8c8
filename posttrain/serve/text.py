"""From generated token ids to the text an API response shows: per-token pieces, stop strings, reasoning.

A completion is streamed and given log-probs token by token, so every token needs the piece of text it
adds. Pieces are decoded incrementally over a short window of earlier tokens, which keeps
multi-token characters and leading-space rules intact; when a tokenizer still disagrees with a plain
decode, the whole text goes into the first piece rather than streaming a wrong string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from posttrain.rollout.types import Rollout

WINDOW = 6  # earlier tokens decoded with each new one
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}  # engine -> OpenAI


def token_pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """Text each token adds; `"".join(pieces) == decode(ids, skip_special_tokens=True)`."""
    pieces = []
    for i in range(len(ids)):
        start = max(0, i - WINDOW)
        before = tokenizer.decode(ids[start:i], skip_special_tokens=True) if i > start else ""
        upto = tokenizer.decode(ids[start : i + 1], skip_special_tokens=True)
        pieces.append(upto[len(before) :] if upto.startswith(before) else None)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if None in pieces or "".join(pieces) != text:
        return [text] + [""] * (len(ids) - 1) if ids else []
    return pieces


def token_strings(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each token on its own, special tokens included (the `token` fields of log-probs)."""
    return [tokenizer.decode([i], skip_special_tokens=False) for i in ids]


@dataclass
class Generated:
    """One completion as the API shows it: cut before any stop string, with OpenAI's finish reason."""

    token_ids: list[int]
    logprobs: list[float]
    pieces: list[str]
    generated_tokens: int  # what the engine produced, stop string and EOS included (usage counts these)
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def finish(rollout: Rollout, tokenizer: Any, stops: tuple[str, ...]) -> Generated:
    """OpenAI leaves the stop string out of the text; the engine keeps it, so it is cut here (with the tokens
    that start inside it)."""
    ids, logprobs = list(rollout.completion_ids), list(rollout.logprobs)
    pieces = token_pieces(tokenizer, ids)
    text = "".join(pieces)
    found = [text.find(s) for s in stops if s in text]
    if found:
        cut, keep, offset = min(found), 0, 0
        while keep < len(pieces) and offset < cut:  # tokens that start before the stop string
            offset += len(pieces[keep])
            keep += 1
        ids, logprobs, pieces = ids[:keep], logprobs[:keep], pieces[:keep]
        if offset > cut:  # the last kept token runs into the stop string
            pieces[-1] = pieces[-1][: len(pieces[-1]) - (offset - cut)]
    return Generated(ids, logprobs, pieces, len(rollout.completion_ids), FINISH_REASONS[rollout.finish_reason])


@dataclass(frozen=True)
class ReasoningSplit:
    """Character spans of a completion: the reasoning before the first `</think>` (less a `<think>` it starts
    with), and the answer after it. Only the two tags are left out; no model text is lost."""

    reasoning: tuple[int, int] | None
    content_start: int

    @classmethod
    def of(cls, text: str) -> ReasoningSplit:
        end = text.find(THINK_CLOSE)
        if end < 0:
            return cls(None, 0)
        start = len(THINK_OPEN) if text.startswith(THINK_OPEN) else 0
        return cls((start, end), end + len(THINK_CLOSE))

    def message(self, text: str) -> dict[str, Any]:
        reasoning = text[self.reasoning[0] : self.reasoning[1]] if self.reasoning else None
        return {"role": "assistant", "content": text[self.content_start :], "reasoning_content": reasoning}

    def delta(self, text: str, start: int, end: int) -> dict[str, str]:
        """The part of text[start:end] that is reasoning, and the part that is content."""
        delta = {}
        if self.reasoning:
            low, high = max(start, self.reasoning[0]), min(end, self.reasoning[1])
            if high > low:
                delta["reasoning_content"] = text[low:high]
        low = max(start, self.content_start)
        if end > low:
            delta["content"] = text[low:end]
        return delta
