"""Words, sentences and paragraphs of a response, split without NLTK (whose data download fails offline).

The rules follow what IFEval counts: a word is a run of word characters (`\\w+`); a sentence ends at `.`,
`!` or `?` (possibly repeated, possibly followed by closing quotes or brackets) before whitespace or the end,
except after common abbreviations, initials, acronyms and inside numbers; text with no terminator at all is
one sentence.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")
# Words as a word tokenizer sees them for capitalisation: hyphen-, apostrophe- and dot-joined parts stay one
# token ("WELL-KNOWN", "U.S"), punctuation around them is dropped.
_TOKEN = re.compile(r"\w+(?:[-'’.]\w+)*")
_ABBREVIATIONS = (
    "mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "inc", "ltd", "co", "corp", "vs", "etc", "e.g", "i.e",
    "fig", "approx", "dept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
    "oct", "nov", "dec", "mt", "ave", "p.s", "p.p.s",
)  # fmt: skip
_PROTECTED = "\x00"  # stands in for a dot that does not end a sentence; never present in model text we count
_ABBREVIATION = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")\.",
    re.IGNORECASE,
)
_ACRONYM = re.compile(r"\b((?:[A-Za-z]\.){2,})")  # U.S.A. e.g. i.e.
_INITIAL = re.compile(r"(?<![\w.])([A-Z])\.(?=\s+[A-Z])")  # J. Smith
_NUMBER_DOT = re.compile(r"(?<=\d)\.(?=\d)")  # 3.14
_ELLIPSIS_MID = re.compile(r"\.{3}(?=\s+[a-z])")  # "and so... we went" is one sentence
# Possessive and anchored at the start of a run of terminators, so a long run of dots stays linear.
_SENTENCE_END = re.compile(r"(?<![.!?])[.!?]++[\"'”’)\]]*+(?=\s|$)")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _protect(text: str) -> str:
    text = text.replace(_PROTECTED, " ")
    text = _NUMBER_DOT.sub(_PROTECTED, text)
    text = _ACRONYM.sub(lambda m: m.group(1).replace(".", _PROTECTED), text)
    text = _ABBREVIATION.sub(lambda m: m.group(1).replace(".", _PROTECTED) + _PROTECTED, text)
    text = _INITIAL.sub(lambda m: m.group(1) + _PROTECTED, text)
    return _ELLIPSIS_MID.sub(_PROTECTED * 3, text)


def sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, each stripped; pieces without a word character are dropped."""
    protected = _protect(text)
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(protected):
        pieces.append(protected[start : match.end()])
        start = match.end()
    pieces.append(protected[start:])
    restored = (p.replace(_PROTECTED, ".").strip() for p in pieces)
    return [p for p in restored if _WORD.search(p)]


def star_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by a markdown divider `***`; None when an empty paragraph sits between two others.

    Empty pieces before the first or after the last divider do not count, as in IFEval.
    """
    pieces = re.split(r"\s?\*\*\*\s?", text)
    kept = []
    for index, piece in enumerate(pieces):
        if piece.strip():
            kept.append(piece)
        elif 0 < index < len(pieces) - 1:
            return None
    return kept


def blank_line_paragraphs(text: str) -> list[str]:
    """Pieces of `text` between blank lines (`\\n\\n`), empty ones kept so positions stay IFEval's."""
    return re.split(r"\n\n", text)
