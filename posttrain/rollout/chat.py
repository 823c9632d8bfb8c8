"""One chat encoding for every generation path: the fleet, Markovian RSA, evaluation, serving and judges."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_SENTINEL = "\u2063posttrain-user-content\u2063"

Segment = str | Sequence[int]  # text to encode, or token ids spliced in verbatim


def encode_messages(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a chat prompt, ending with the assistant turn's opening."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages)
    return encode_text(tokenizer, text)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []


def user_turn_frame(tokenizer: Any) -> tuple[str, str]:
    """The chat prompt's text before and after a single user message's content."""
    if not getattr(tokenizer, "chat_template", None):
        return "", ""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
    )
    before, found, after = rendered.partition(_SENTINEL)
    if not found:
        raise ValueError("the tokenizer's chat template does not render the user message's content verbatim")
    return before, after


def encode_user_segments(tokenizer: Any, segments: Sequence[Segment]) -> list[int]:
    """A one-turn chat prompt whose user content is `segments`: text is encoded piece by piece, token-id
    segments are spliced in unchanged. Its length is therefore the sum of the pieces' lengths, which makes
    bounds on it exact whatever the tokenizer (a decoded and re-encoded tail could grow)."""
    before, after = user_turn_frame(tokenizer)
    ids = encode_text(tokenizer, before)
    for segment in segments:
        ids += encode_text(tokenizer, segment) if isinstance(segment, str) else list(segment)
    return ids + encode_text(tokenizer, after)
