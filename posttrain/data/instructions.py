"""Builtin instruction-following chat prompts with verifiable constraints, in IFEval's format.

Each row is `{prompt, messages, instruction_id_list, kwargs, topic}`: a request to write about a small topic
(posttrain.data.topics) plus one or two IFEval instructions (word and sentence counts, keywords, case,
endings, bullets, JSON, quotes, titles, postscripts), phrased in the prompt and given as IFEval ids and
kwargs so that `posttrain.rewards.ifeval` checks the answer. Generation is seeded and reproducible. As in
`posttrain.data.from_envs`, a fixed tenth of all prompts (by hash) is held out and never trained on.

`respond(row, rng)` writes a response that follows every instruction (checked before it is returned), and
`Draft` is the form both it and the preference-pair generator build responses in.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from posttrain.data.from_envs import is_heldout
from posttrain.data.topics import TOPICS, Topic
from posttrain.rewards.ifeval import check_constraint, ifeval_specs

Row = dict[str, Any]
REQUESTS = ("Write a short note about {topic}.", "Tell me about {topic}.", "Describe {topic} briefly.")
END_PHRASES = ("Any other questions?", "Is there anything else I can help with?", "That is all.")
POSTSCRIPTS = ("P.S. Thanks for asking.", "P.S. There is more to learn.")
TITLES = ("A short note", "Quick facts")


@dataclass
class Draft:
    """A response before rendering: content sentences and how they are laid out."""

    topic: Topic
    sentences: list[str]
    layout: str = "plain"  # plain | bullets | json
    case: str = "as_is"  # as_is | lower | upper
    title: str | None = None
    postscript: str | None = None
    end_phrase: str | None = None
    quoted: bool = False
    comma_joined: bool = False

    def render(self) -> str:
        if self.layout == "json":
            body = json.dumps({"topic": self.topic.name, "facts": self.sentences})
        elif self.layout == "bullets":
            body = "\n".join(f"* {s}" for s in self.sentences)
        elif self.comma_joined:
            body = ", and ".join(s.rstrip(".") for s in self.sentences) + "."
        else:
            body = " ".join(self.sentences)
        parts = [f"<<{self.title}>>"] if self.title else []
        parts += [body, *(p for p in (self.postscript, self.end_phrase) if p)]
        text = "\n".join(parts)
        text = text.lower() if self.case == "lower" else text.upper() if self.case == "upper" else text
        return f'"{text}"' if self.quoted else text


@dataclass(frozen=True)
class Instruction:
    """One IFEval instruction the generator can ask for: how to draw its kwargs, say it, and meet it."""

    id: str
    draw: Callable[[random.Random, Topic], dict[str, Any]]
    say: Callable[[dict[str, Any]], str]
    apply: Callable[[Draft, dict[str, Any], random.Random], None] = lambda draft, kwargs, rng: None
    conflicts: frozenset[str] = field(default_factory=frozenset)


def _set(**values: Any) -> Callable[[Draft, dict[str, Any], random.Random], None]:
    def apply(draft: Draft, kwargs: dict[str, Any], rng: random.Random) -> None:
        for name, value in values.items():
            setattr(draft, name, value(kwargs, rng) if callable(value) else value)

    return apply


def _bulleted(draft: Draft, kwargs: dict[str, Any], rng: random.Random) -> None:
    draft.layout = "bullets"
    draft.sentences = draft.sentences[: kwargs["num_bullets"]]


_LAYOUT = frozenset({"detectable_format:json_format", "detectable_format:number_bullet_lists"})
_WRAPPERS = frozenset({"startend:quotation", "detectable_format:title"})
_CASES = frozenset({"change_case:english_lowercase", "change_case:english_capital"})
# JSON combines only with keyword and word-count instructions (IFEval's own table allows keywords only).
# Conflicts are symmetric: listing one on either side keeps the pair apart.
_NOT_WITH_JSON = frozenset(
    {
        "length_constraints:number_sentences",
        "detectable_format:number_bullet_lists",
        "punctuation:no_comma",
        "startend:end_checker",
        "detectable_content:postscript",
        *_WRAPPERS,
        *_CASES,
    }
)

INSTRUCTIONS: tuple[Instruction, ...] = (
    Instruction(
        "length_constraints:number_words",
        lambda rng, topic: rng.choice(
            [{"relation": "less than", "num_words": n} for n in (12, 20, 30)]
            + [{"relation": "at least", "num_words": n} for n in (10, 20, 30)]
        ),
        lambda k: f"Answer with {k['relation']} {k['num_words']} words.",
    ),
    Instruction(
        "length_constraints:number_sentences",
        lambda rng, topic: rng.choice(
            [{"relation": "less than", "num_sentences": n} for n in (2, 3)]
            + [{"relation": "at least", "num_sentences": n} for n in (3, 4)]
        ),
        lambda k: f"Your response should contain {k['relation']} {k['num_sentences']} sentences.",
    ),
    Instruction(
        "keywords:existence",
        lambda rng, topic: {"keywords": sorted(rng.sample(topic.keywords, rng.choice((1, 2))))},
        lambda k: f"Include the keyword{'s' * (len(k['keywords']) > 1)} {' and '.join(k['keywords'])} in the response.",
    ),
    Instruction(
        "keywords:forbidden_words",
        lambda rng, topic: {"forbidden_words": [rng.choice(topic.keywords)]},
        lambda k: f"Do not use the word {k['forbidden_words'][0]}.",
    ),
    Instruction(
        "change_case:english_lowercase",
        lambda rng, topic: {},
        lambda k: "Your entire response should be in English and in all lowercase letters.",
        _set(case="lower"),
        conflicts=_CASES,
    ),
    Instruction(
        "change_case:english_capital",
        lambda rng, topic: {},
        lambda k: "Your entire response should be in English and in all capital letters.",
        _set(case="upper"),
        conflicts=_CASES,
    ),
    Instruction(
        "startend:end_checker",
        lambda rng, topic: {"end_phrase": rng.choice(END_PHRASES)},
        lambda k: f"Finish your response with this exact phrase: {k['end_phrase']}",
        _set(end_phrase=lambda k, rng: k["end_phrase"]),
    ),
    Instruction(
        "detectable_format:number_bullet_lists",
        lambda rng, topic: {"num_bullets": rng.choice((2, 3, 4))},
        lambda k: f"Your answer must contain exactly {k['num_bullets']} markdown bullet points such as: * a point",
        _bulleted,
        conflicts=_LAYOUT | {"startend:quotation"},
    ),
    Instruction(
        "detectable_format:json_format",
        lambda rng, topic: {},
        lambda k: "Wrap your entire output in JSON format.",
        _set(layout="json"),
        conflicts=_LAYOUT | _NOT_WITH_JSON,
    ),
    Instruction(
        "punctuation:no_comma",
        lambda rng, topic: {},
        lambda k: "Do not use any commas in your response.",
    ),
    Instruction(
        "startend:quotation",
        lambda rng, topic: {},
        lambda k: "Wrap your entire response in double quotation marks.",
        _set(quoted=True),
        conflicts=_WRAPPERS | {"detectable_format:number_bullet_lists"},
    ),
    Instruction(
        "detectable_format:title",
        lambda rng, topic: {},
        lambda k: "Give your answer a title wrapped in double angular brackets such as <<my title>>.",
        _set(title=lambda k, rng: rng.choice(TITLES)),
        conflicts=_WRAPPERS,
    ),
    Instruction(
        "detectable_content:postscript",
        lambda rng, topic: {"postscript_marker": "P.S."},
        lambda k: "At the end of your response add a postscript starting with P.S.",
        _set(postscript=lambda k, rng: rng.choice(POSTSCRIPTS)),
    ),
)
BY_ID = {instruction.id: instruction for instruction in INSTRUCTIONS}


def _compatible(chosen: list[Instruction], candidate: Instruction) -> bool:
    return all(
        other.id != candidate.id and other.id not in candidate.conflicts and candidate.id not in other.conflicts
        for other in chosen
    )


def _draw_row(rng: random.Random, max_instructions: int) -> Row:
    topic = rng.choice(TOPICS)
    chosen: list[Instruction] = []
    for _ in range(rng.randint(1, max_instructions)):
        options = [i for i in INSTRUCTIONS if _compatible(chosen, i)]
        chosen.append(rng.choice(options))
    kwargs = [i.draw(rng, topic) for i in chosen]
    request = rng.choice(REQUESTS).format(topic=topic.name)
    prompt = " ".join([request, *(i.say(k) for i, k in zip(chosen, kwargs, strict=True))])
    return {
        "prompt": prompt,
        "messages": [{"role": "user", "content": prompt}],
        "instruction_id_list": [i.id for i in chosen],
        "kwargs": kwargs,
        "topic": topic.name,
    }


def follows(response: str, row: Row) -> list[bool]:
    """Per instruction of `row`, whether `response` follows it (the reward's own checker)."""
    return [check_constraint(response, spec) for spec in ifeval_specs(row["instruction_id_list"], row["kwargs"])]


def _content_sentences(topic: Topic, row: Row, rng: random.Random) -> list[str]:
    """The topic's sentences in a random order, those with a required keyword first, forbidden ones out."""
    by_id = dict(zip(row["instruction_id_list"], row["kwargs"], strict=True))
    forbidden = [w.lower() for w in by_id.get("keywords:forbidden_words", {}).get("forbidden_words", [])]
    required = [w.lower() for w in by_id.get("keywords:existence", {}).get("keywords", [])]
    pool = [s for s in topic.sentences if not any(w in s.lower().replace(".", " ").split() for w in forbidden)]
    rng.shuffle(pool)
    return sorted(pool, key=lambda s: not any(w in s.lower() for w in required))


def draft_for(row: Row, topic: Topic, rng: random.Random, *, tries: int = 12) -> Draft | None:
    """A draft about `topic` that follows every instruction of `row`, or None when none was found."""
    instructions = [(BY_ID[i], k) for i, k in zip(row["instruction_id_list"], row["kwargs"], strict=True)]
    for _ in range(tries):
        content = _content_sentences(topic, row, rng)
        for count in rng.sample(range(1, len(content) + 1), len(content)):
            draft = Draft(topic, content[:count])
            for instruction, kwargs in instructions:
                instruction.apply(draft, kwargs, rng)
            if all(follows(draft.render(), row)):
                return draft
    return None


def topic_of(row: Row) -> Topic:
    return next(t for t in TOPICS if t.name == row["topic"])


def respond(row: Row, rng: random.Random) -> str | None:
    """An on-topic response that follows every instruction of `row`, or None if the generator found none."""
    draft = draft_for(row, topic_of(row), rng)
    return draft.render() if draft else None


def instruction_prompts(count: int, seed: int, *, heldout: bool = False, max_instructions: int = 2) -> list[Row]:
    """`count` rows that `respond` can answer: training prompts, or with `heldout` only held-out ones."""
    rng = random.Random(f"instructions/{seed}/{'heldout' if heldout else 'train'}")
    rows: list[Row] = []
    for _ in range(count * 200):
        if len(rows) == count:
            return rows
        row = _draw_row(rng, max_instructions)
        if is_heldout(row["prompt"]) == heldout and draft_for(row, topic_of(row), random.Random(row["prompt"])):
            rows.append(row)
    raise RuntimeError(f"drew too few answerable instruction prompts ({len(rows)} of {count})")
