"""posttrain's short constraint names, each with a response that satisfies it and one that does not
(IFEval's 25 instruction ids are in test_ifeval_instructions.py)."""

from __future__ import annotations

import pytest

from posttrain.rewards import make_reward
from posttrain.rewards.ifeval import SHORT_CHECKS, check_constraint

CASES = [
    ({"type": "word_count", "min": 3, "max": 5}, "one two three four", "one two"),
    ({"type": "sentence_count", "min": 2}, "It rains. It pours!", "Just one sentence here"),
    ({"type": "sentence_count", "max": 1}, "Dr. Who met Mr. Smith at 3.30 today.", "One. Two."),
    ({"type": "paragraph_count", "min": 2, "max": 2}, "First part.\n\nSecond part.", "Only one paragraph."),
    ({"type": "keywords_include", "words": ["apple", "pear"]}, "An Apple and a pear.", "An apple only."),
    ({"type": "keywords_exclude", "words": ["never"]}, "I always do it.", "I never do it."),
    ({"type": "keyword_frequency", "word": "cat", "min": 2}, "cat and cat", "cat and dog (concatenate)"),
    ({"type": "letter_frequency", "letter": "z", "min": 3}, "Zany zebra zoo", "zebra"),
    ({"type": "json_format"}, '```json\n{"a": [1, 2]}\n```', "{'a': 1}"),
    ({"type": "no_commas"}, "No commas at all.", "Well, here is one."),
    ({"type": "lowercase"}, "all quiet here.", "Not all quiet."),
    ({"type": "uppercase"}, "LOUD AND CLEAR!", "LOUD and clear"),
    ({"type": "sections", "n": 2}, "Section 1\nIntro\nSection 2\nBody", "Section 1\nOnly one"),
    ({"type": "bullet_count", "n": 3}, "* a\n* b\n- c", "* a\n* b"),
    (
        {"type": "ending_phrase", "phrase": "Any other questions?"},
        "Done. Any other questions?  \n",
        "Any other questions? Bye.",
    ),
    ({"type": "starts_with", "phrase": "Dear"}, "  Dear team, hello", "Hello team"),
    ({"type": "quoted"}, '"A quoted reply."', 'A "partly" quoted reply.'),
    ({"type": "title"}, "<<My Poem>>\nRoses are red", "My Poem\nRoses are red"),
    ({"type": "placeholders", "n": 2}, "Hi [name], from [city]", "Hi [name]"),
    ({"type": "postscript"}, "Body text.\nP.S. see you", "Body text. ps see you"),
]


def test_every_short_name_is_covered() -> None:
    assert len({spec["type"] for spec, _, _ in CASES}) == 19
    assert {spec["type"] for spec, _, _ in CASES} == set(SHORT_CHECKS)


@pytest.mark.parametrize(("spec", "good", "bad"), CASES, ids=[c[0]["type"] for c in CASES])
def test_constraint_accepts_and_rejects(spec: dict, good: str, bad: str) -> None:
    assert check_constraint(good, spec) is True
    assert check_constraint(bad, spec) is False


@pytest.mark.parametrize(
    "spec", [{"type": "nope"}, {"type": "keywords_include"}, {"type": "bullet_count", "n": "x"}, {}, None, "word_count"]
)
def test_malformed_specs_fail_instead_of_raising(spec: object) -> None:
    assert check_constraint("anything", spec) is False  # type: ignore[arg-type]


def test_reward_strict_and_fractional_on_the_visible_answer() -> None:
    constraints = [{"type": "no_commas"}, {"type": "lowercase"}]
    completions = ["<think>Hmm, OK</think>all good here", "<think>x</think>All good here", "Bad, Bad", "\x00\xffA, b"]
    strict = make_reward("ifeval")([""] * 4, completions, constraints=constraints)
    assert strict.scores == [1.0, 0.0, 0.0, 0.0]
    assert strict.metrics["ifeval/no_commas"] == pytest.approx(0.5)
    partial = make_reward("ifeval", strict=False)([""] * 4, completions, constraints=constraints)
    assert partial.scores == [1.0, 0.5, 0.0, 0.0]
    assert make_reward("ifeval")(["", ""], ["x", "y"], constraints=[[], None]).scores == [1.0, 1.0]
