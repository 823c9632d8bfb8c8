"""Builtin instruction prompts and synthetic preference pairs, checked with oracles written here (not with the
generator's own checker), and preference files in TRL's formats."""

from __future__ import annotations

import json
import random
import re
import zlib

import datasets
import pytest
from trl.data_utils import is_conversational

from posttrain.data.instructions import instruction_prompts, respond
from posttrain.data.preferences import load_preferences, synthetic_preferences
from posttrain.data.topics import TOPICS
from posttrain.errors import UserError
from posttrain.rewards import make_reward


def _follows(response: str, instruction: str, kwargs: dict) -> bool:
    """Each generated instruction type, judged by the plainest reading of its prompt text."""
    body = response.strip()
    if instruction == "length_constraints:number_words":
        n = len(re.findall(r"\w+", body))
        return n < kwargs["num_words"] if kwargs["relation"] == "less than" else n >= kwargs["num_words"]
    if instruction == "length_constraints:number_sentences":
        n = len(re.findall(r"[.!?](?:\s|\"|$)", body.replace("P.S.", "PS")))
        return n < kwargs["num_sentences"] if kwargs["relation"] == "less than" else n >= kwargs["num_sentences"]
    if instruction == "keywords:existence":
        return all(k.lower() in body.lower() for k in kwargs["keywords"])
    if instruction == "keywords:forbidden_words":
        return not any(w.lower() in re.findall(r"\w+", body.lower()) for w in kwargs["forbidden_words"])
    if instruction == "change_case:english_lowercase":
        return body == body.lower() and body != body.upper()
    if instruction == "change_case:english_capital":
        return body == body.upper() and body != body.lower()
    if instruction == "startend:end_checker":
        return body.strip('"').lower().endswith(kwargs["end_phrase"].lower())
    if instruction == "detectable_format:number_bullet_lists":
        return sum(line.startswith("* ") for line in body.split("\n")) == kwargs["num_bullets"]
    if instruction == "detectable_format:json_format":
        try:
            json.loads(body)
        except ValueError:
            return False
        return True
    if instruction == "punctuation:no_comma":
        return "," not in body
    if instruction == "startend:quotation":
        return len(body) > 1 and body[0] == body[-1] == '"'
    if instruction == "detectable_format:title":
        return bool(re.match(r'"?<<[^>\n]+>>\n', body))
    if instruction == "detectable_content:postscript":
        return "\nP.S. " in body or "\np.s. " in body
    raise AssertionError(f"no oracle for {instruction}")


def _all_follow(response: str, row: dict) -> bool:
    return all(_follows(response, i, k) for i, k in zip(row["instruction_id_list"], row["kwargs"], strict=True))


def test_topics_are_ascii_comma_free_and_keywords_recur() -> None:
    for topic in TOPICS:
        for sentence in topic.sentences:
            assert sentence.isascii() and "," not in sentence and sentence.endswith(".")
        for keyword in topic.keywords:
            assert sum(keyword in s.lower() for s in topic.sentences) >= 2, (topic.name, keyword)


def test_prompts_are_reproducible_and_held_out_by_hash() -> None:
    train = instruction_prompts(300, seed=5)
    assert train == instruction_prompts(300, seed=5)
    assert train != instruction_prompts(300, seed=6)
    heldout = instruction_prompts(40, seed=5, heldout=True)
    assert all(zlib.crc32(r["prompt"].encode()) % 10 == 0 for r in heldout)
    assert all(zlib.crc32(r["prompt"].encode()) % 10 != 0 for r in train)
    assert not {r["prompt"] for r in heldout} & {r["prompt"] for r in train}
    for row in train[:50]:
        assert row["messages"] == [{"role": "user", "content": row["prompt"]}]
        assert row["topic"] in row["prompt"] and 1 <= len(row["instruction_id_list"]) == len(row["kwargs"]) <= 2
    seen = {i for r in train for i in r["instruction_id_list"]}
    assert len(seen) == 13


def test_responses_follow_every_instruction_by_an_independent_reading() -> None:
    rng = random.Random(0)
    for row in instruction_prompts(200, seed=1):
        response = respond(row, rng)
        assert response is not None and _all_follow(response, row), (row["prompt"], response)
    rows = instruction_prompts(200, seed=1)
    assert (
        make_reward("ifeval")(
            [r["prompt"] for r in rows],
            [respond(r, rng) for r in rows],
            instruction_id_list=[r["instruction_id_list"] for r in rows],
            kwargs=[r["kwargs"] for r in rows],
        ).scores
        == [1.0] * 200
    )


def test_synthetic_preferences_chosen_follows_and_rejected_breaks_or_degenerates() -> None:
    pairs = synthetic_preferences(300, seed=2)
    assert pairs == synthetic_preferences(300, seed=2)
    kinds = {p["rejected_kind"] for p in pairs}
    assert kinds == {"violates", "off_topic", "repetition"}
    for pair in pairs:
        assert is_conversational(pair)
        assert [m["role"] for m in pair["prompt"]] == ["user"]
        assert [m["role"] for m in pair["chosen"]] == [m["role"] for m in pair["rejected"]] == ["assistant"]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        topic = next(t for t in TOPICS if t.name == pair["topic"])
        assert _all_follow(chosen, pair) and any(s.lower() in chosen.lower() for s in topic.sentences)
        if pair["rejected_kind"] == "violates":
            assert not _all_follow(rejected, pair), (pair["prompt"], rejected)
        elif pair["rejected_kind"] == "off_topic":
            assert not any(s.lower().rstrip(".") in rejected.lower() for s in topic.sentences), rejected
        else:
            encoded = rejected.encode()
            assert len(zlib.compress(encoded, 9)) / len(encoded) < 0.3, rejected  # a loop compresses very well
    heldout = synthetic_preferences(30, seed=2, heldout=True)
    assert not {p["prompt"][0]["content"] for p in heldout} & {p["prompt"][0]["content"] for p in pairs}


def test_preference_pairs_survive_a_datasets_round_trip_with_ifeval_nulls(tmp_path) -> None:
    pairs = synthetic_preferences(40, seed=3)
    datasets.Dataset.from_list(pairs).to_json(str(tmp_path / "p.jsonl"))
    loaded = load_preferences(str(tmp_path / "p.jsonl"))
    assert loaded[0] == {
        "chosen": pairs[0]["prompt"] + pairs[0]["chosen"],
        "rejected": pairs[0]["prompt"] + pairs[0]["rejected"],
    }
    rows = datasets.Dataset.from_json(str(tmp_path / "p.jsonl"))
    reward = make_reward("ifeval")
    out = reward(
        ["p"] * 40,
        [p["chosen"][0]["content"] for p in pairs],
        instruction_id_list=rows["instruction_id_list"],
        kwargs=rows["kwargs"],
    )
    assert out.scores == [1.0] * 40  # null-padded kwargs, as a parquet/JSON round trip leaves them, still check


def test_preference_file_formats(tmp_path) -> None:
    user = [{"role": "user", "content": "Hi?"}]
    text_rows = [{"prompt": "Hi?", "chosen": "Hello.", "rejected": "No."}]
    (tmp_path / "text.jsonl").write_text("\n".join(json.dumps(r) for r in text_rows) + "\n")
    expected = {
        "chosen": [*user, {"role": "assistant", "content": "Hello."}],
        "rejected": [*user, {"role": "assistant", "content": "No."}],
    }
    assert load_preferences(str(tmp_path / "text.jsonl")) == [expected]
    datasets.Dataset.from_list([expected]).to_parquet(str(tmp_path / "implicit.parquet"))
    assert load_preferences(str(tmp_path / "implicit.parquet")) == [expected]
    datasets.Dataset.from_list([{"prompt": user, **{k: v[1:] for k, v in expected.items()}}]).save_to_disk(
        str(tmp_path / "saved")
    )
    assert load_preferences(str(tmp_path / "saved")) == [expected]
    (tmp_path / "bare.json").write_text(json.dumps([{"chosen": "good", "rejected": "bad"}]))
    assert load_preferences(str(tmp_path / "bare.json"))[0]["chosen"] == [{"role": "assistant", "content": "good"}]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "x", "completion": "y"}], "no 'chosen' or 'rejected' column"),
        ([{"prompt": "x", "chosen": "y"}], "no 'rejected' column"),
        (
            [{"chosen": [{"role": "user", "content": "a"}], "rejected": "b"}],
            "row 0: 'chosen' must end with an assistant",
        ),
        ([{"chosen": [{"content": "a"}], "rejected": "b"}], "row 0: expected a string"),
    ],
)
def test_bad_preference_files_are_one_line_user_errors(tmp_path, rows: list, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(UserError, match=re.escape(message)) as error:
        load_preferences(str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="does not exist"):
        load_preferences(str(tmp_path / "missing.jsonl"))
