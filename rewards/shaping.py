"""Shaping terms that look at the form of a completion, not its correctness.

- `format`: the completion closes its reasoning (`</think>`) and then gives an extractable answer.
- `overlong`: DAPO's soft overlong punishment. With maximum length L and buffer B, a completion of
  length n gets 0 when n <= L - B, a linear penalty (L - B - n) / B inside the buffer, and -1 beyond L.
  With `mask_truncated`, truncated samples are flagged in the per-sample metric `overlong/mask` (0 = drop
  from the loss), DAPO's overlong filtering.
- `repetition`: ZAYA1's LZ77 repetition canary. zlib's DEFLATE is LZ77 plus Huffman coding, so the ratio
  compressed bytes / raw UTF-8 bytes drops towards 0 as a completion loops; below the threshold (0.05) the
  canary reads 0, and gating a reward on it zeroes degenerate samples.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from posttrain.answers import EXTRACTORS, after_thinking
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward

REPETITION_THRESHOLD = 0.05


def compression_ratio(text: str) -> float:
    """len(zlib.compress(utf-8 bytes, level 9)) / len(utf-8 bytes); 1.0 for empty text."""
    raw = as_text(text).encode("utf-8", errors="replace")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0


def overlong_penalty(length: int, max_length: int, buffer: int) -> float:
    """DAPO soft overlong punishment, in [-1, 0]."""
    if length <= max_length - buffer:
        return 0.0
    if length > max_length or buffer <= 0:
        return -1.0
    return (max_length - buffer - length) / buffer


@register_reward("format")
class FormatReward:
    """1.0 when the completion ends its thinking (if `require_think`) and then states an answer in `styles`."""

    def __init__(self, *, require_think: bool = True, styles: Sequence[str] = ("answer_tag", "boxed")) -> None:
        self.require_think = require_think
        self.styles = tuple(styles)

    def _ok(self, text: str) -> bool:
        if self.require_think and ("</think>" not in text or text.count("<think>") > 1):
            return False
        visible = after_thinking(text)
        return any(EXTRACTORS[style](visible) for style in self.styles)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        scores = [float(self._ok(as_text(c))) for c in completions]
        return RewardOutput(scores, {"format/ok": mean(scores)})


@register_reward("overlong")
class OverlongReward:
    """Adds DAPO's overlong penalty. Lengths come from `length_column` (token counts, from the rollout);
    without it the completion's character count is used."""

    def __init__(
        self, *, max_length: int, buffer: int, mask_truncated: bool = False, length_column: str = "completion_length"
    ) -> None:
        if max_length <= 0 or not 0 <= buffer <= max_length:
            raise ValueError(f"overlong needs 0 <= buffer <= max_length > 0, got {buffer=} {max_length=}")
        self.max_length, self.buffer = max_length, buffer
        self.mask_truncated = mask_truncated
        self.length_column = length_column

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        n = len(completions)
        given = zip(per_sample(columns, self.length_column, n), completions, strict=True)
        lengths = [int(x) if isinstance(x, int | float) else len(as_text(c)) for x, c in given]
        flags = zip(per_sample(columns, "truncated", n), lengths, strict=True)
        truncated = [bool(t) if t is not None else length >= self.max_length for t, length in flags]
        scores = [overlong_penalty(length, self.max_length, self.buffer) for length in lengths]
        metrics: dict[str, float | list[float]] = {
            "overlong/penalty": mean(scores),
            "overlong/truncated": mean(truncated),
        }
        if self.mask_truncated:
            metrics["overlong/mask"] = [0.0 if t else 1.0 for t in truncated]
        return RewardOutput(scores, metrics)


@register_reward("repetition")
class RepetitionCanary:
    """1.0 for normal text, 0.0 for text whose compression ratio is below `threshold` (a repetition loop)."""

    def __init__(self, *, threshold: float = REPETITION_THRESHOLD) -> None:
        self.threshold = threshold

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        ratios = [compression_ratio(as_text(c)) for c in completions]
        scores = [0.0 if r < self.threshold else 1.0 for r in ratios]
        return RewardOutput(scores, {"repetition/ratio": ratios, "repetition/tripped": 1.0 - mean(scores)})
