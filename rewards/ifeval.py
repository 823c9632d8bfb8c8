"""Verifiable instruction checks (IFEval-style): each constraint is a small pure function of the response.

A sample's constraints arrive either as IFEval rows (`instruction_id_list` plus a parallel `kwargs` list,
exactly as google/IFEval ships them, `None`-valued keys included) or as a `constraints` column of specs
such as `{"type": "word_count", "min": 50}`; a spec's `type` is one of IFEval's 25 ids (with IFEval's kwargs
beside it) or one of posttrain's short names below. The checker looks only at the text after `</think>`.
Unknown types and malformed specs fail the constraint (they never raise), so a bad dataset row cannot pass
by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from posttrain.answers import after_thinking
from posttrain.rewards.base import RewardOutput, as_text, mean, per_sample, register_reward
from posttrain.rewards.ifeval_checks import IFEVAL_CHECKS
from posttrain.rewards.text_units import sentences, words

_BULLET = re.compile(r"^[^\S\n]*[*-][^\S\n]+\S", re.MULTILINE)


def _in_range(value: int, spec: dict[str, Any]) -> bool:
    return int(spec.get("min", 0)) <= value <= int(spec.get("max", 10**12))


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


def _line_starts(text: str, marker: str, tail: str = "") -> int:
    return len(re.findall(rf"^[^\S\n]*{re.escape(marker)}{tail}", text, re.MULTILINE))


# posttrain's short names (kept working as they were before the IFEval ids were added).
SHORT_CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "word_count": lambda t, s: _in_range(len(words(t)), s),
    "sentence_count": lambda t, s: _in_range(len(sentences(t)), s),
    "paragraph_count": lambda t, s: _in_range(len([p for p in re.split(r"\n\s*\n|\*\*\*", t) if p.strip()]), s),
    "keywords_include": lambda t, s: all(_keyword_count(t, w) > 0 for w in s["words"]),
    "keywords_exclude": lambda t, s: all(_keyword_count(t, w) == 0 for w in s["words"]),
    "keyword_frequency": lambda t, s: _in_range(_keyword_count(t, s["word"]), s),
    "letter_frequency": lambda t, s: _in_range(t.lower().count(str(s["letter"]).lower()), s),
    "json_format": lambda t, s: _is_json(t),
    "no_commas": lambda t, s: "," not in t,
    "lowercase": lambda t, s: t == t.lower() and any(c.isalpha() for c in t),
    "uppercase": lambda t, s: t == t.upper() and any(c.isalpha() for c in t),
    "sections": lambda t, s: _line_starts(t, s.get("marker", "Section"), r"\s+\d+") == s["n"],
    "bullet_count": lambda t, s: len(_BULLET.findall(t)) == int(s["n"]),
    "ending_phrase": lambda t, s: t.rstrip().endswith(str(s["phrase"])),
    "starts_with": lambda t, s: t.lstrip().startswith(str(s["phrase"])),
    "quoted": lambda t, s: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"',
    "title": lambda t, s: re.search(r"<<[^<>\n]+>>", t) is not None,
    "placeholders": lambda t, s: len(re.findall(r"\[[^\[\]\n]+\]", t)) >= int(s["n"]),
    "postscript": lambda t, s: _line_starts(t, s.get("marker", "P.S.")) > 0,
}
CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {**SHORT_CHECKS, **IFEVAL_CHECKS}


def check_constraint(response: str, spec: dict[str, Any]) -> bool:
    """Whether `response` satisfies one constraint spec; False for unknown or malformed specs."""
    try:
        check = CHECKS[spec["type"]]
        return bool(check(as_text(response), spec))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, re.error):
        return False


def check_all(response: str, constraints: Sequence[dict[str, Any]]) -> list[bool]:
    return [check_constraint(response, spec) for spec in constraints or []]


def ifeval_specs(instruction_ids: Any, kwargs_list: Any) -> list[dict[str, Any]]:
    """Specs from an IFEval row: one per instruction id, its kwargs without IFEval's `None` placeholders."""
    if not isinstance(instruction_ids, list | tuple):
        return []
    kwargs_list = kwargs_list if isinstance(kwargs_list, list | tuple) else []
    specs = []
    for index, instruction_id in enumerate(instruction_ids):
        kwargs = kwargs_list[index] if index < len(kwargs_list) and isinstance(kwargs_list[index], dict) else {}
        specs.append({**{k: v for k, v in kwargs.items() if v is not None}, "type": instruction_id})
    return specs


def loose_variants(response: str) -> list[str]:
    """IFEval's loose reading: the response, without its first and/or last line, each also without `*`."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [v for v in cut + [c.replace("*", "") for c in cut] if v.strip()]


@register_reward("ifeval")
class InstructionFollowingReward:
    """1.0 when every constraint holds (`strict`), else the fraction that hold; no constraints scores 1.0.

    With `loose`, a constraint holds when it holds for any of IFEval's loose variants of the response.
    Metrics: `ifeval/pass` (prompt level), `ifeval/instruction_pass` (instruction level) and the pass rate
    of each instruction type, `ifeval/<type>`.
    """

    def __init__(
        self,
        *,
        constraints_column: str = "constraints",
        ids_column: str = "instruction_id_list",
        kwargs_column: str = "kwargs",
        strict: bool = True,
        loose: bool = False,
    ) -> None:
        self.constraints_column, self.ids_column, self.kwargs_column = constraints_column, ids_column, kwargs_column
        self.strict, self.loose = strict, loose

    def _passes(self, response: str, spec: Any) -> bool:
        if not isinstance(spec, dict):
            return False
        variants = loose_variants(response) if self.loose else [response]
        return any(check_constraint(v, spec) for v in variants)

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> RewardOutput:
        n = len(completions)
        constraint_lists = per_sample(columns, self.constraints_column, n, [])
        id_lists = per_sample(columns, self.ids_column, n, None)
        kwargs_lists = per_sample(columns, self.kwargs_column, n, None)
        scores: list[float] = []
        type_hits: dict[str, list[float]] = {}
        rows = zip(completions, constraint_lists, id_lists, kwargs_lists, strict=True)
        for completion, constraints, ids, kwargs in rows:
            specs = list(constraints) if isinstance(constraints, list | tuple) else []
            specs += ifeval_specs(ids, kwargs)
            response = after_thinking(as_text(completion))
            results = [self._passes(response, spec) for spec in specs]
            for spec, ok in zip(specs, results, strict=True):
                kind = str(spec.get("type", "?")) if isinstance(spec, dict) else "?"
                type_hits.setdefault(kind, []).append(float(ok))
            if not results:
                scores.append(1.0)
            else:
                scores.append(float(all(results)) if self.strict else mean([float(r) for r in results]))
        every = [hit for hits in type_hits.values() for hit in hits]
        metrics: dict[str, float | list[float]] = {"ifeval/pass": mean(scores), "ifeval/instruction_pass": mean(every)}
        metrics.update({f"ifeval/{kind}": mean(hits) for kind, hits in type_hits.items()})
        return RewardOutput(scores, metrics)
