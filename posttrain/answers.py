"""Pull the final answer out of a model completion.

Environments and rewards share these so that every verifier agrees on what "the answer" is. Model
output is untrusted: every function here is linear-time, never raises, and returns None when there is
no answer to find.
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 10_000


def last_tagged(text: str, tag: str = "answer") -> str | None:
    """Content of the last well-formed `<tag>...</tag>` pair: an opening tag and the next closing tag with no
    other tag of the same name between them.

    So `<answer>120</answer></answer>` gives `120` (a stray closing tag is ignored) and
    `<answer>draft <answer>5</answer>` gives `5` (an unclosed opening tag is ignored).
    """
    if not isinstance(text, str):
        return None
    found, opened = None, None
    for match in re.finditer(f"<(/?){re.escape(tag)}>", text):
        if not match.group(1):
            opened = match.end()  # a later opening tag replaces an unclosed earlier one
        elif opened is not None:
            found, opened = (opened, match.start()), None
    if found is None:
        return None
    return text[found[0] : found[1]].strip()[:MAX_ANSWER_CHARS]


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` (or `\fbox{...}`), with nested braces balanced."""
    if not isinstance(text, str):
        return None
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        char = text[i]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()[:MAX_ANSWER_CHARS]
        i += 1
    return None


def answer_line(text: str) -> str | None:
    """Text after the last `Answer:` marker on its line (case-insensitive)."""
    if not isinstance(text, str):
        return None
    position = text.lower().rfind("answer:")
    if position < 0:
        return None
    line = text[position + len("answer:") :].split("\n", 1)[0].strip()
    return line[:MAX_ANSWER_CHARS] or None


def after_thinking(text: str) -> str:
    """The part of a completion after its last `</think>`: answers inside the reasoning do not count."""
    if not isinstance(text, str):
        return ""
    end = text.rfind("</think>")
    return text if end < 0 else text[end + len("</think>") :]


EXTRACTORS = {"answer_tag": last_tagged, "boxed": last_boxed, "answer_line": answer_line}


def extract_answer(text: str, styles: tuple[str, ...] = ("answer_tag", "boxed")) -> str | None:
    """First style (in order) that finds an answer in the post-reasoning part of `text`."""
    visible = after_thinking(text)
    for style in styles:
        found = EXTRACTORS[style](visible)
        if found is not None:
            return found
    return None
