"""Answer-preserving trimming: fit a chat sample into a token budget without ever cutting an answer.

The steps, in order (the ZAYA1 recipe):
1. a sample that fits is kept as it is;
2. otherwise the end of the last `<think>` block is cut, just before `</think>`, as little as needed;
3. if that is not enough, earlier turns lose their think blocks, and step 2 is tried again;
4. a sample whose answers alone do not fit is dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _think_span(content: str) -> tuple[int, int] | None:
    """(start, end) of the last think block's body in `content`."""
    close = content.rfind(THINK_CLOSE)
    if close < 0:
        return None
    open_ = content.rfind(THINK_OPEN, 0, close)
    return None if open_ < 0 else (open_ + len(THINK_OPEN), close)


def _last_assistant(messages: Messages) -> int | None:
    indices = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    return indices[-1] if indices else None


def _without_earlier_thinking(messages: Messages, last: int) -> Messages:
    out = []
    for i, message in enumerate(messages):
        span = _think_span(message["content"]) if message["role"] == "assistant" and i != last else None
        if span is not None:
            start, end = span
            content = message["content"]
            message = {**message, "content": content[: start - len(THINK_OPEN)] + content[end + len(THINK_CLOSE) :]}
        out.append(message)
    return out


def _trim_last_thinking(
    messages: Messages, last: int, fits: Callable[[Messages], bool], tokenizer: PreTrainedTokenizerBase
) -> Messages | None:
    """Cut the end of the last think block as little as needed (binary search over kept tokens)."""
    content = messages[last]["content"]
    span = _think_span(content)
    if span is None:
        return None
    start, end = span
    body_ids = tokenizer(content[start:end], add_special_tokens=False).input_ids

    def with_body(kept: int) -> Messages:
        body = tokenizer.decode(body_ids[:kept])
        trimmed = {**messages[last], "content": content[:start] + body + content[end:]}
        return [*messages[:last], trimmed, *messages[last + 1 :]]

    if not fits(with_body(0)):
        return None
    low, high = 0, len(body_ids)  # invariant: with_body(low) fits
    while low < high:
        middle = (low + high + 1) // 2
        if fits(with_body(middle)):
            low = middle
        else:
            high = middle - 1
    return with_body(low)


def token_count(messages: Messages, tokenizer: PreTrainedTokenizerBase) -> int:
    """Tokens of the sample as the trainer sees it (chat template applied)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def fit_to_budget(
    messages: Messages, tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> tuple[Messages | None, str]:
    """(sample or None, one of 'kept' / 'trimmed' / 'dropped')."""

    def fits(candidate: Messages) -> bool:
        return token_count(candidate, tokenizer) <= max_tokens

    if fits(messages):
        return messages, "kept"
    last = _last_assistant(messages)
    if last is None:
        return None, "dropped"
    trimmed = _trim_last_thinking(messages, last, fits, tokenizer)
    if trimmed is not None:
        return trimmed, "trimmed"
    shorter = _without_earlier_thinking(messages, last)
    if fits(shorter):
        return shorter, "trimmed"
    trimmed = _trim_last_thinking(shorter, last, fits, tokenizer)
    if trimmed is not None:
        return trimmed, "trimmed"
    return None, "dropped"


def fit_all(
    samples: list[Messages], tokenizer: PreTrainedTokenizerBase, max_tokens: int
) -> tuple[list[Messages], dict[str, int]]:
    kept, counts = [], Counter({"kept": 0, "trimmed": 0, "dropped": 0})
    for sample in samples:
        fitted, status = fit_to_budget(sample, tokenizer, max_tokens)
        counts[status] += 1
        if fitted is not None:
            kept.append(fitted)
    return kept, dict(counts)
