"""Math answer grading: math-verify for parsing and symbolic equivalence, with exact arithmetic on top.

math-verify 0.9 has two problems we work around:
- its timeouts use `signal.alarm`, which fails off the main thread and silently scored every answer 0 inside
  Ray workers; we disable them (`parsing_timeout=None`, `timeout_seconds=None`) and enforce a hard timeout
  by running the grading in a `ProcessPool` worker that is killed when it overruns;
- it compares numbers after rounding, so 1/2^99 "equals" 1/2^98 and 0.1 "equals" 0.1000001; whenever both
  sides are numbers (or tuples/sets/intervals/matrices of numbers) we re-check with exact rationals, or
  with 60-digit arithmetic for irrationals.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from posttrain.answers import extract_answer
from posttrain.procpool import ProcessPool
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward

DEFAULT_TIMEOUT_S = 5.0
MAX_INPUT_CHARS = 2_000  # answers longer than this are not math answers; parsing them only burns time
_RELATIVE_TOLERANCE = 1e-12  # for irrational values, compared at 60 significant digits


def _quiet_math_verify() -> None:
    """Worker initializer: import the heavy parser once and silence its 'timeout disabled' warning."""
    import math_verify  # noqa: F401

    logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    text = text.replace("\\$", "")  # a currency sign, not a math delimiter
    if "$" not in text and "\\boxed" not in text:
        text = f"${text}$"
    return parse(text, parsing_timeout=None)


def _normalise_text(text: str) -> str:
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    return re.sub(r"[\s$]", "", text).rstrip(".").lower()


def _exact(value: Any) -> Any:
    """The value as an exact sympy Rational, or None if it is not a rational number."""
    import sympy

    if isinstance(value, sympy.Float):
        return sympy.Rational(str(value))  # the decimal digits that were written, not the binary float
    if isinstance(value, sympy.Rational):
        return value
    return None


def _numbers_agree(a: Any, b: Any, percent: bool = False) -> bool:
    """False only when a and b are both numeric (or containers of numbers) and differ exactly.

    With `percent` (a % sign on either side), x and 100·x also agree, as math-verify intends for 50% vs 50.
    """
    import sympy

    if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
        return a.shape == b.shape and all(_numbers_agree(x, y) for x, y in zip(a, b, strict=True))
    containers = (sympy.Tuple, sympy.FiniteSet, sympy.Interval, tuple, list)
    if isinstance(a, containers) and isinstance(b, containers):
        xs, ys = list(a.args if isinstance(a, sympy.Basic) else a), list(b.args if isinstance(b, sympy.Basic) else b)
        return len(xs) != len(ys) or all(_numbers_agree(x, y) for x, y in zip(xs, ys, strict=True))
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr) and a.is_number and b.is_number):
        return True
    a, b = a.doit(), b.doit()
    if a.is_finite is False or b.is_finite is False:
        return bool(a == b)
    candidates = [(a, b), (100 * a, b), (a, 100 * b)] if percent else [(a, b)]
    return any(_same_number(x, y) for x, y in candidates)


def _same_number(a: Any, b: Any) -> bool:
    import sympy

    exact_a, exact_b = _exact(a), _exact(b)
    if exact_a is not None and exact_b is not None:
        return bool(exact_a == exact_b)
    value_a, value_b = sympy.N(a, 60), sympy.N(b, 60)
    scale = max(abs(value_a), abs(value_b))
    return bool(abs(value_a - value_b) <= _RELATIVE_TOLERANCE * scale)


def grade(gold: str, predicted: str) -> bool:
    """Unprotected grading (no timeout): call it only inside a killable worker."""
    from math_verify import verify

    gold, predicted = as_text(gold).strip(), as_text(predicted).strip()
    if not gold or not predicted or len(predicted) > MAX_INPUT_CHARS:
        return False
    if _normalise_text(gold) == _normalise_text(predicted):
        return True  # also covers text answers ("East" vs "east") that sympy would read as symbol products
    gold_parsed, predicted_parsed = _parse(gold), _parse(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    if not verify(gold_parsed, predicted_parsed, timeout_seconds=None):
        return False
    return _numbers_agree(gold_parsed[0], predicted_parsed[0], percent="%" in gold + predicted)


class _SharedPool:
    """One lazily started grading pool per process, so single `math_equal` calls don't start a worker each.

    A forked child (a DataLoader worker, say) must not share its parent's worker pipes: it starts its own.
    """

    def __init__(self) -> None:
        self._pool: ProcessPool | None = None
        self._owner = 0
        self._lock = threading.Lock()

    def get(self, num_workers: int = 2) -> ProcessPool:
        with self._lock:
            if self._pool is None or self._owner != os.getpid():
                self._pool = ProcessPool(num_workers, timeout_s=DEFAULT_TIMEOUT_S, initializer=_quiet_math_verify)
                self._owner = os.getpid()
                atexit.register(self._pool.close)
            return self._pool


_SHARED = _SharedPool()


def grade_pairs(
    pairs: Sequence[tuple[str, str]], *, timeout_s: float = DEFAULT_TIMEOUT_S, pool: ProcessPool | None = None
) -> list[bool | None]:
    """Grade (gold, predicted) pairs in parallel with a hard timeout; None: that grading timed out or crashed."""
    pool = pool or _SHARED.get()
    results = pool.map(grade, [(as_text(g), as_text(p)) for g, p in pairs], timeout_s=timeout_s)
    return [bool(r.value) if r.ok else None for r in results]


def math_equal(gold: str, predicted: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when `predicted` is mathematically the same answer as `gold`; False on timeout or garbage."""
    return bool(grade_pairs([(gold, predicted)], timeout_s=timeout_s)[0])


@register_reward("math")
class MathReward:
    """1.0 when the completion's final answer (after `</think>`) equals the gold answer, else 0.0."""

    def __init__(
        self,
        *,
        answer_column: str = "answer",
        styles: Sequence[str] = ("answer_tag", "boxed", "answer_line"),
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.answer_column = answer_column
        self.styles = tuple(styles)
        self.timeout_s = timeout_s

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        golds = per_sample(columns, self.answer_column, len(completions))
        answers = [extract_answer(as_text(c), self.styles) for c in completions]
        todo = [i for i, (g, a) in enumerate(zip(golds, answers, strict=True)) if g is not None and a is not None]
        graded = grade_pairs([(golds[i], answers[i]) for i in todo], timeout_s=self.timeout_s)
        scores = [0.0] * len(completions)
        for i, ok in zip(todo, graded, strict=True):
            scores[i] = 1.0 if ok else 0.0
        return RewardOutput(
            scores,
            {
                "math/accuracy": mean(scores),
                "math/extracted": mean([a is not None for a in answers]),
                "math/grader_failures": float(sum(ok is None for ok in graded)),  # timeouts and crashes
            },
        )
