"""Which language a response is written in, for IFEval's language checks, with no model and no downloads.

IFEval names languages by ISO 639-1 code (its 30 response languages, plus `zh`). Most are told apart by
their script alone; within a shared script the decision comes from letters only one language uses
(Ukrainian `ї`, Urdu `ے`, Vietnamese `ơ`, Polish `ł`, ...) and then from counts of very common function
words. Latin text without clear evidence for another language (two of its function words, or one of its
letters) counts as English, the usual case for short replies. This is a coarse identifier meant for
rewards on whole responses, not for single words.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

# (first, last) code points of each script; letters outside every range are ignored.
_SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)),
    "cyrillic": ((0x400, 0x4FF),),
    "greek": ((0x370, 0x3FF),),
    "hebrew": ((0x590, 0x5FF),),
    "arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "devanagari": ((0x900, 0x97F),),
    "bengali": ((0x980, 0x9FF),),
    "gurmukhi": ((0xA00, 0xA7F),),
    "gujarati": ((0xA80, 0xAFF),),
    "tamil": ((0xB80, 0xBFF),),
    "telugu": ((0xC00, 0xC7F),),
    "kannada": ((0xC80, 0xCFF),),
    "malayalam": ((0xD00, 0xD7F),),
    "thai": ((0xE00, 0xE7F),),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "kana": ((0x3040, 0x30FF),),
    "han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF)),
}
_SINGLE_LANGUAGE_SCRIPTS = {
    "greek": "el", "hebrew": "he", "bengali": "bn", "gurmukhi": "pa", "gujarati": "gu", "tamil": "ta",
    "telugu": "te", "kannada": "kn", "malayalam": "ml", "thai": "th", "hangul": "ko",
}  # fmt: skip


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_FUNCTION_WORDS: dict[str, dict[str, frozenset[str]]] = {
    "latin": {
        "en": _vocabulary("the and is are of to in that it with for this was you be on not have they we as what"),
        "es": _vocabulary("el la los las de que y en es un una por con para del se no muy pero como está son"),
        "pt": _vocabulary("o a os as de que e em um uma não com para por do da dos das é se mais são muito"),
        "fr": _vocabulary("le la les de des et est un une du en que qui dans pour pas ne sur avec il elle nous"),
        "de": _vocabulary("der die das und ist nicht ein eine zu den dem mit sich auf für ich sie es wir auch"),
        "it": _vocabulary("il lo la gli le di che e è un una per non con del della sono in si anche ma questo"),
        "pl": _vocabulary("i w z na się nie to jest że do jak o co ale są od za po tak ten ta"),
        "vi": _vocabulary("và của là có không một những các được trong cho với người này đã tôi để khi rất"),
        "sw": _vocabulary("na ya wa kwa ni za katika hii kama sana yake lakini watu pia mimi wewe yeye sisi"),
        "fi": _vocabulary("ja on ei se että hän oli ovat mutta kun tämä minä sinä myös niin kuin ole olen"),
    },
    "cyrillic": {
        "ru": _vocabulary("и в не на что он с как это по но она я мы они был была"),
        "bg": _vocabulary("и в не на е са да от за това се с че той тя ние те"),
    },
    "devanagari": {
        "hi": _vocabulary("है हैं के में की और से का को यह नहीं था"),
        "mr": _vocabulary("आहे आहेत आणि हे या ते नाही व मी होते"),
        "ne": _vocabulary("छ छन् र हो पनि यो गर्न भएको मा लागि थियो हुन्छ"),
    },
}
# Letters that only one language of a shared script uses; each occurrence counts as two function words.
_MARKER_LETTERS: dict[str, str] = {
    "vi": "ơưđăạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
    "pl": "ąęłńśźżć",
    "es": "ñ¿¡",
    "pt": "ãõ",
    "de": "ßü",
    "uk": "іїєґ",
    "ru": "ыэё",
    "bg": "ъ",
}
_DEFAULT_PRIOR = 1.5
_URDU_LETTERS = "ٹڈڑںےہھ"
_PERSIAN_LETTERS = "پچژگیک"


def _script_of(char: str) -> str | None:
    code = ord(char)
    for script, ranges in _SCRIPTS.items():
        if any(low <= code <= high for low, high in ranges):
            return script
    return None


def _by_function_words(text: str, script: str, default: str) -> str:
    # Letters and combining marks (Indic vowel signs are marks) make words; everything else separates them.
    tokens = "".join(c if unicodedata.category(c)[0] in "LM" else " " for c in text.lower()).split()
    scores = Counter({language: 0.0 for language in _FUNCTION_WORDS[script]})
    scores[default] = _DEFAULT_PRIOR  # one stray function word ("no", "a") is not evidence enough
    for language, vocabulary in _FUNCTION_WORDS[script].items():
        scores[language] += sum(token in vocabulary for token in tokens)
        scores[language] += 2 * sum(text.lower().count(letter) for letter in _MARKER_LETTERS.get(language, ""))
    return max(scores, key=lambda language: scores[language])


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of `text`'s language, or None when it has no letters at all."""
    counts = Counter(script for char in text if char.isalpha() and (script := _script_of(char)))
    if not counts:
        return None
    if counts["han"] or counts["kana"]:
        cjk = counts["han"] + counts["kana"]
        if cjk >= max(counts.values()):
            return "ja" if counts["kana"] >= 0.05 * cjk else "zh"
    script = max(counts, key=lambda s: counts[s])
    if script in _SINGLE_LANGUAGE_SCRIPTS:
        return _SINGLE_LANGUAGE_SCRIPTS[script]
    if script == "arabic":
        if any(letter in text for letter in _URDU_LETTERS):
            return "ur"
        return "fa" if any(letter in text for letter in _PERSIAN_LETTERS) else "ar"
    if script == "cyrillic":
        if any(letter in text.lower() for letter in _MARKER_LETTERS["uk"]):
            return "uk"
        return _by_function_words(text, "cyrillic", "ru")
    if script == "devanagari":
        return _by_function_words(text, "devanagari", "hi")
    return _by_function_words(text, "latin", "en")


SUPPORTED_LANGUAGES = frozenset(
    {*_SINGLE_LANGUAGE_SCRIPTS.values(), "ar", "fa", "ur", "uk", "zh", "ja"}
    | {language for table in _FUNCTION_WORDS.values() for language in table}
)
