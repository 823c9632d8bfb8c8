"""The 25 instruction types of IFEval (Zhou et al., 2023), keyed by IFEval's ids and taking IFEval's kwargs.

Each check is `check(response, kwargs) -> bool` and reproduces what IFEval's reference checker counts, with
three deliberate differences: keywords are matched literally (IFEval compiles them as regular expressions),
the language of a response is identified by `posttrain.rewards.langid` (IFEval uses langdetect), and every
pattern runs in linear time, since model output may be hostile. Relations are IFEval's `less than` and
`at least`, plus `at most`, `more than` and `exactly`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from posttrain.rewards.langid import SUPPORTED_LANGUAGES, detect_language
from posttrain.rewards.text_units import blank_line_paragraphs, sentences, star_paragraphs, word_tokens, words

Check = Callable[[str, dict[str, Any]], bool]

RELATIONS: dict[str, Callable[[int, int], bool]] = {
    "less than": lambda actual, n: actual < n,
    "at least": lambda actual, n: actual >= n,
    "at most": lambda actual, n: actual <= n,
    "more than": lambda actual, n: actual > n,
    "exactly": lambda actual, n: actual == n,
}
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
_BULLET_STAR = re.compile(r"^[^\S\n]*\*[^*].*$", re.MULTILINE)
_BULLET_DASH = re.compile(r"^[^\S\n]*-.*$", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n*]*\*\*")
_JSON_FENCES = ("```json", "```Json", "```JSON", "```")
_PARAGRAPH_WORD_STOP = frozenset(".,?!'\"")


def _compare(actual: int, kwargs: dict[str, Any], count_key: str, relation_key: str = "relation") -> bool:
    return RELATIONS[str(kwargs[relation_key]).strip().lower()](actual, int(kwargs[count_key]))


def _phrases(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a non-empty list of words, got {value!r}")
    return [str(v) for v in value]


def _literal_count(text: str, phrase: Any) -> int:
    return len(re.findall(re.escape(str(phrase)), text, re.IGNORECASE))


def _placeholders(text: str) -> int:
    """Matches of `\\[.*?\\]` (a bracket closed on the same line), counted in one linear scan."""
    count = 0
    for line in text.split("\n"):
        start = line.find("[")
        while start != -1:
            end = line.find("]", start + 1)
            if end == -1:
                break
            count += 1
            start = line.find("[", end + 1)
    return count


def _has_title(text: str) -> bool:
    """A `<<...>>` on one line with something inside; greedy per line, as the pattern `<<[^\\n]+>>` matches."""
    for line in text.split("\n"):
        first, last = line.find("<<"), line.rfind(">>")
        if first != -1 and last >= first + 3 and line[first : last + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def _highlights(text: str) -> int:
    single = [h for h in _HIGHLIGHT.findall(text) if h.strip("*").strip()]
    double = [h for h in _DOUBLE_HIGHLIGHT.findall(text) if h.removeprefix("**").removesuffix("**").strip()]
    return len(single) + len(double)


def _sections(text: str, kwargs: dict[str, Any]) -> int:
    splitter = re.escape(str(kwargs["section_spliter"]).strip())
    return len(re.split(rf"\s?{splitter}\s?\d+\s?", text)) - 1


def _is_json(text: str) -> bool:
    payload = text.strip()
    for fence in _JSON_FENCES:
        payload = payload.removeprefix(fence)
    try:
        json.loads(payload.removesuffix("```").strip())
    except (ValueError, RecursionError):
        return False
    return True


def _nth_paragraph_first_word(text: str, kwargs: dict[str, Any]) -> bool:
    paragraphs = blank_line_paragraphs(text)
    count = sum(1 for p in paragraphs if p.strip())
    nth = int(kwargs["nth_paragraph"])
    if not 1 <= nth <= count or not paragraphs[nth - 1].strip():
        return False
    word = paragraphs[nth - 1].split()[0].lstrip("'").lstrip('"')
    first = ""
    for char in word:
        if char in _PARAGRAPH_WORD_STOP:
            break
        first += char.lower()
    return count == int(kwargs["num_paragraphs"]) and first == str(kwargs["first_word"]).strip().lower()


def _postscript(text: str, kwargs: dict[str, Any]) -> bool:
    marker = str(kwargs["postscript_marker"]).strip()
    if marker == "P.P.S":
        pattern = r"p\.\s?p\.\s?s"
    elif marker == "P.S.":
        pattern = r"p\.\s?s\."
    else:
        pattern = re.escape(marker.lower())
    return re.search(pattern, text.lower()) is not None


def _two_responses(text: str) -> bool:
    pieces = text.split("******")
    kept = []
    for index, piece in enumerate(pieces):
        if piece.strip():
            kept.append(piece.strip())
        elif 0 < index < len(pieces) - 1:
            return False
    return len(kept) == 2 and kept[0] != kept[1]


def _in_language(text: str, language: Any) -> bool:
    if language not in SUPPORTED_LANGUAGES:
        raise ValueError(f"language {language!r} is not identifiable here")
    return detect_language(text) in (language, None)  # no letters at all: nothing contradicts the instruction


def _english(text: str) -> bool:
    return detect_language(text) in ("en", None)


IFEVAL_CHECKS: dict[str, Check] = {
    "keywords:existence": lambda t, k: all(_literal_count(t, w) > 0 for w in _phrases(k["keywords"])),
    "keywords:frequency": lambda t, k: _compare(_literal_count(t, str(k["keyword"]).strip()), k, "frequency"),
    "keywords:forbidden_words": lambda t, k: (
        not any(re.search(rf"\b{re.escape(w)}\b", t, re.IGNORECASE) for w in _phrases(k["forbidden_words"]))
    ),
    "keywords:letter_frequency": lambda t, k: _compare(
        t.lower().count(str(k["letter"]).strip().lower()), k, "let_frequency", "let_relation"
    ),
    "language:response_language": lambda t, k: _in_language(t, k["language"]),
    "length_constraints:number_sentences": lambda t, k: _compare(len(sentences(t)), k, "num_sentences"),
    "length_constraints:number_paragraphs": lambda t, k: (
        (p := star_paragraphs(t)) is not None and len(p) == int(k["num_paragraphs"])
    ),
    "length_constraints:number_words": lambda t, k: _compare(len(words(t)), k, "num_words"),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": lambda t, k: _placeholders(t) >= int(k["num_placeholders"]),
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": lambda t, k: (
        len(_BULLET_STAR.findall(t)) + len(_BULLET_DASH.findall(t)) == int(k["num_bullets"])
    ),
    "detectable_format:constrained_response": lambda t, k: any(r in t.strip() for r in CONSTRAINED_RESPONSES),
    "detectable_format:number_highlighted_sections": lambda t, k: _highlights(t) >= int(k["num_highlights"]),
    "detectable_format:multiple_sections": lambda t, k: _sections(t, k) >= int(k["num_sections"]),
    "detectable_format:json_format": lambda t, k: _is_json(t),
    "detectable_format:title": lambda t, k: _has_title(t),
    "combination:two_responses": lambda t, k: _two_responses(t),
    "combination:repeat_prompt": lambda t, k: t.strip().lower().startswith(str(k["prompt_to_repeat"]).strip().lower()),
    "startend:end_checker": lambda t, k: t.strip().strip('"').lower().endswith(str(k["end_phrase"]).strip().lower()),
    "change_case:capital_word_frequency": lambda t, k: _compare(
        sum(w.isupper() for w in word_tokens(t)), k, "capital_frequency", "capital_relation"
    ),
    "change_case:english_capital": lambda t, k: t.isupper() and _english(t),
    "change_case:english_lowercase": lambda t, k: t.islower() and _english(t),
    "punctuation:no_comma": lambda t, k: "," not in t,
    "startend:quotation": lambda t, k: len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"',
}
