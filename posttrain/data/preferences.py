"""Preference pairs for reward-model training: read from files in TRL's formats, or generated.

A file gives `chosen`/`rejected` as message lists (the shared leading messages are the prompt) or as text,
optionally with a `prompt` column (text or messages). Every pair is normalised to whole conversations
`{"chosen": [...], "rejected": [...]}` ending in an assistant message, which is what TRL's `RewardTrainer`
tokenises with the chat template and what `posttrain.rewards.reward_model` renders when it scores.

The synthetic set pairs each builtin instruction prompt (posttrain.data.instructions) with a chosen answer
that follows its instructions on topic, and a rejected one that breaks one instruction, is about another
topic, or is a degenerate loop.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from posttrain.data.instructions import Draft, draft_for, follows, instruction_prompts, topic_of
from posttrain.data.sources import as_messages, convert_records, read_records
from posttrain.data.topics import TOPICS
from posttrain.errors import UserError

Messages = list[dict[str, str]]
Pair = dict[str, Any]
REJECTED_KINDS = {"violates": 0.5, "off_topic": 0.25, "repetition": 0.25}
MAX_LOOP_CHARS = 300  # a degenerate loop as long as a long answer, not longer (it must fit the RM's context)


def to_pair(record: dict[str, Any]) -> Pair:
    """One record as whole chosen/rejected conversations, each ending in an assistant message."""
    prompt = as_messages(record["prompt"], "user") if record.get("prompt") not in (None, "", []) else []
    pair = {side: prompt + as_messages(record[side], "assistant") for side in ("chosen", "rejected")}
    for side, conversation in pair.items():
        if not conversation or conversation[-1]["role"] != "assistant":
            raise ValueError(f"'{side}' must end with an assistant message")
    return pair


def load_preferences(path: str) -> list[Pair]:
    """Every pair in `path`; a file without `chosen`/`rejected` columns is refused before any row is read."""
    dataset = read_records(path)
    missing = [c for c in ("chosen", "rejected") if c not in dataset.column_names]
    if missing:
        raise UserError(
            f"data.path={path!r} has no {' or '.join(repr(c) for c in missing)} column (columns: "
            f"{', '.join(dataset.column_names) or 'none'}); preference pairs need 'chosen' and 'rejected', "
            "as messages or text, with an optional 'prompt'"
        )
    return convert_records(path, dataset, to_pair, "preference pairs")


def _violation(draft: Draft, instruction_id: str, kwargs: dict[str, Any]) -> Draft:
    """`draft` changed so that it breaks `instruction_id` (and, as far as possible, only that)."""
    topic = draft.topic
    if instruction_id in ("length_constraints:number_words", "length_constraints:number_sentences"):
        longer = kwargs["relation"] in ("less than", "at most")
        return replace(draft, sentences=list(topic.sentences) if longer else draft.sentences[:1])
    if instruction_id == "keywords:existence":
        keywords = [k.lower() for k in kwargs["keywords"]]
        return replace(draft, sentences=[s for s in topic.sentences if not any(k in s.lower() for k in keywords)])
    if instruction_id == "keywords:forbidden_words":
        word = kwargs["forbidden_words"][0].lower()
        return replace(draft, sentences=[next(s for s in topic.sentences if word in s.lower()), *draft.sentences])
    if instruction_id == "punctuation:no_comma":
        first = draft.sentences[0]
        return replace(draft, sentences=[f"Well, {first[0].lower()}{first[1:]}", *draft.sentences[1:]])
    if instruction_id == "detectable_format:number_bullet_lists":
        count = kwargs["num_bullets"] + (1 if len(topic.sentences) > kwargs["num_bullets"] else -1)
        return replace(draft, sentences=list(topic.sentences[:count]))
    undo = {
        "change_case:english_lowercase": {"case": "as_is"},
        "change_case:english_capital": {"case": "as_is"},
        "startend:end_checker": {"end_phrase": None},
        "detectable_format:json_format": {"layout": "plain"},
        "startend:quotation": {"quoted": False},
        "detectable_format:title": {"title": None},
        "detectable_content:postscript": {"postscript": None},
    }
    return replace(draft, **undo[instruction_id])


def _loop(draft: Draft, rng: random.Random) -> str:
    """A degenerate answer: one sentence, or its first words, repeated until it is about as long as an answer."""
    unit = rng.choice(draft.sentences)
    if rng.random() < 0.5:
        unit = " ".join(unit.rstrip(".").split()[: rng.randint(2, 3)])
    return " ".join([unit] * max(3, MAX_LOOP_CHARS // (len(unit) + 1)))


def _rejected(row: dict[str, Any], chosen: Draft, kind: str, rng: random.Random) -> str | None:
    if kind == "violates":
        index = rng.randrange(len(row["instruction_id_list"]))
        broken = _violation(chosen, row["instruction_id_list"][index], row["kwargs"][index]).render()
        return broken if broken and not follows(broken, row)[index] else None
    if kind == "off_topic":
        others = [t for t in TOPICS if t.name != row["topic"]]
        draft = draft_for(row, rng.choice(others), rng)
        return draft.render() if draft else None
    return _loop(chosen, rng)


def synthetic_preferences(count: int, seed: int, *, heldout: bool = False) -> list[Pair]:
    """`count` pairs in TRL's conversational preference format, plus the row's IFEval columns and
    `rejected_kind`; with `heldout`, only held-out prompts (never among the training pairs' prompts)."""
    rng = random.Random(f"preferences/{seed}/{'heldout' if heldout else 'train'}")
    kinds, weights = list(REJECTED_KINDS), list(REJECTED_KINDS.values())
    pairs: list[Pair] = []
    for row in instruction_prompts(count, seed, heldout=heldout):
        # instruction_prompts kept only rows this prompt-seeded search answers, so the fallback always succeeds
        chosen = draft_for(row, topic_of(row), rng) or draft_for(row, topic_of(row), random.Random(row["prompt"]))
        kind = rng.choices(kinds, weights)[0]
        rejected = _rejected(row, chosen, kind, rng)
        if rejected is None:  # this kind cannot be built for this row: a loop always can
            kind, rejected = "repetition", _loop(chosen, rng)
        pairs.append(
            {
                "prompt": row["messages"],
                "chosen": [{"role": "assistant", "content": chosen.render()}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "instruction_id_list": row["instruction_id_list"],
                "kwargs": row["kwargs"],
                "topic": row["topic"],
                "rejected_kind": kind,
            }
        )
    return pairs
