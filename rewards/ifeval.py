"""IFEval-style verifiable instruction checks: each constraint is a small pure function of the response.

A sample's constraints come in a column (default `constraints`) as a list of specs such as
`{"type": "word_count", "min": 50}`. The checker looks only at the text after `</think>`. Unknown types
and malformed specs fail the constraint (they never raise), so a bad dataset row cannot pass by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from posttrain.answers import after_thinking
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward

_WORD = re.compile(r"\b\w+\b")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)


def _in_range(value: int, spec: dict[str, Any]) -> bool:
    return int(spec.get("min", 0)) <= value <= int(spec.get("max", 10**12))


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _json_payload(text: str) -> str:
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)```\s*", text, re.DOTALL | re.IGNORECASE)
    return fenced.group(1) if fenced else text


def _is_json(text: str) -> bool:
    try:
        json.loads(_json_payload(text))
    except (ValueError, RecursionError):
        return False
    return True


def _keyword_count(text: str, word: str) -> int:
    return len(re.findall(rf"\b{re.escape(str(word))}\b", text, re.IGNORECASE))


CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "word_count": lambda t, s: _in_range(len(_words(t)), s),
    "sentence_count": lambda t, s: _in_range(len(_SENTENCE_END.findall(t)), s),
    "paragraph_count": lambda t, s: _in_range(len([p for p in re.split(r"\n\s*\n|\*\*\*", t) if p.strip()]), s),
    "keywords_include": lambda t, s: all(_keyword_count(t, w) > 0 for w in s["words"]),
    "keywords_exclude": lambda t, s: all(_keyword_count(t, w) == 0 for w in s["words"]),
    "keyword_frequency": lambda t, s: _in_range(_keyword_count(t, s["word"]), s),
    "letter_frequency": lambda t, s: _in_range(t.lower().count(str(s["letter"]).lower()), s),
    "json_format": lambda t, s: _is_json(t),
    "no_commas": lambda t, s: "," not in t,
    "lowercase": lambda t, s: t == t.lower() and any(c.isalpha() for c in t),
    "uppercase": lambda t, s: t == t.upper() and any(c.isalpha() for c in t),
    "sections": lambda t, s: len(re.findall(rf"^\s*{re.escape(s.get('marker', 'Section'))}\s+\d+", t, re.M)) == s["n"],
    "bullet_count": lambda t, s: len(_BULLET.findall(t)) == int(s["n"]),
    "ending_phrase": lambda t, s: t.rstrip().endswith(str(s["phrase"])),
    "starts_with": lambda t, s: t.lstrip().startswith(str(s["phrase"])),
    "quoted": lambda t, s: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"',
    "title": lambda t, s: re.search(r"<<[^<>\n]+>>", t) is not None,
    "placeholders": lambda t, s: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= int(s["n"]),
    "postscript": lambda t, s: re.search(rf"^\s*{re.escape(s.get('marker', 'P.S.'))}", t, re.M) is not None,
}


def check_constraint(response: str, spec: dict[str, Any]) -> bool:
    """Whether `response` satisfies one constraint spec; False for unknown or malformed specs."""
    try:
        check = CHECKS[spec["type"]]
        return bool(check(as_text(response), spec))
    except (KeyError, TypeError, ValueError, AttributeError, re.error):
        return False


def check_all(response: str, constraints: Sequence[dict[str, Any]]) -> list[bool]:
    return [check_constraint(response, spec) for spec in constraints or []]


@register_reward("ifeval")
class InstructionFollowingReward:
    """1.0 when every constraint holds (`strict`), else the fraction that hold; no constraints scores 1.0."""

    def __init__(self, *, constraints_column: str = "constraints", strict: bool = True) -> None:
        self.constraints_column = constraints_column
        self.strict = strict

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        constraint_lists = per_sample(columns, self.constraints_column, len(completions), [])
        scores, type_hits = [], {}
        for completion, constraints in zip(completions, constraint_lists, strict=True):
            constraints = constraints if isinstance(constraints, list | tuple) else []
            results = check_all(after_thinking(as_text(completion)), constraints)
            for spec, ok in zip(constraints, results, strict=True):
                kind = spec.get("type", "?") if isinstance(spec, dict) else "?"
                type_hits.setdefault(kind, []).append(float(ok))
            if not results:
                scores.append(1.0)
            else:
                scores.append(float(all(results)) if self.strict else mean([float(r) for r in results]))
        metrics: dict[str, float | list[float]] = {"ifeval/pass": mean(scores)}
        metrics.update({f"ifeval/{kind}": mean(hits) for kind, hits in type_hits.items()})
        return RewardOutput(scores, metrics)
