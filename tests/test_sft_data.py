import json

import pytest

from posttrain.data import from_envs
from posttrain.data.sources import load_messages
from posttrain.errors import UserError


def test_generated_samples_are_correct_oracle_answers_and_deterministic():
    samples = from_envs.generate(["add", "multiply"], [0, 2], 200, seed=5)
    assert len(samples) == 200
    operators = set()
    for prompt, answer in ((s[0]["content"], s[1]["content"]) for s in samples):
        expression = prompt.split("=")[0]
        operator = "+" if "+" in expression else "*"
        operators.add(operator)
        a, b = (int(x) for x in expression.split(operator))
        assert answer == f"<answer>{a + b if operator == '+' else a * b}</answer>"
    assert operators == {"+", "*"}
    assert from_envs.generate(["add"], [1], 50, seed=5) == from_envs.generate(["add"], [1], 50, seed=5)
    assert from_envs.generate(["add"], [1], 50, seed=5) != from_envs.generate(["add"], [1], 50, seed=6)


def test_heldout_prompts_are_never_trained_on():
    train = from_envs.generate(["add"], [1], 3000, seed=0)
    heldout = from_envs.heldout("add", 1, 100, seed=0)
    assert len(heldout) == 100 and len({h[0]["content"] for h in heldout}) == 100
    assert not {t[0]["content"] for t in train} & {h[0]["content"] for h in heldout}
    assert all(from_envs.is_heldout(h[0]["content"]) for h in heldout)
    for sample in heldout[:20]:
        a, b = sample[0]["content"].split("=")[0].split("+")
        assert sample[1]["content"] == f"<answer>{int(a) + int(b)}</answer>"
        assert len(a) == len(b) == 2  # difficulty 1 is 2-digit addition


def test_file_sources(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"prompt": "2+2?", "completion": "4"},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows[1:]) + "\n")
    assert load_messages(str(path)) == [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]]
    import datasets

    datasets.Dataset.from_list([rows[0]]).to_parquet(str(tmp_path / "d.parquet"))
    assert load_messages(str(tmp_path / "d.parquet"))[0][1]["content"] == "yo"
    datasets.Dataset.from_list([rows[0]]).save_to_disk(str(tmp_path / "saved"))
    assert load_messages(str(tmp_path / "saved"))[0][0]["content"] == "hi"
    (tmp_path / "bad.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="unsupported format"):
        load_messages(str(tmp_path / "bad.csv"))
