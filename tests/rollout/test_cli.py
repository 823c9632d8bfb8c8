"""`posttrain rsa`: a real run on zaya-tiny, JSONL in and out, and bad input rejected before any work."""

from __future__ import annotations

import json

import pytest

import posttrain.rollout.fleet
from posttrain.cli import main

TINY = ["rsa.N=2", "rsa.C=2", "rsa.T=1", "rsa.beta=6", "rsa.tau=3", "ray.num_cpus=1"]


def test_prompt_run_prints_candidates_and_majority(cli):
    done = cli("rsa", "prompt=What is 2+3?", *TINY, "rsa.aggregation_template='{problem} {candidates}'")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "problem: What is 2+3?"
    assert sum(line.startswith("  candidate ") for line in lines) == 2
    assert lines[-1].startswith("majority: ") and lines[-1].endswith("/2 votes)")
    assert "RSA rounds" not in done.stderr  # no progress bar outside a terminal


def test_jsonl_prompts_give_one_result_line_each(ray_session, tmp_path, capsys):
    """In this process, on the session's Ray (a second Ray start would cost more than the run)."""
    data = tmp_path / "prompts.jsonl"
    data.write_text(json.dumps({"prompt": "What is 1+1?"}) + "\n\n" + json.dumps({"prompt": "What is 4*2?", "id": 7}))
    output = tmp_path / "out" / "results.jsonl"
    assert main(["rsa", f"data.path={data}", f"output={output}", *TINY, "rsa.T=0"]) == 0
    assert capsys.readouterr().out.count("majority: ") == 2
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["problem"] for r in records] == ["What is 1+1?", "What is 4*2?"]
    for record in records:
        assert len(record["rounds"]) == 1 and len(record["answers"]) == 2 and "majority" in record
        assert all(node["policy_version"] == 0 for node in record["rounds"][0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prompt=hi", "rsa.N=2", "rsa.C=3"], "rsa.C must be in [1, rsa.N=2]"),
        (["prompt=hi", "rsa.beta=4", "rsa.tau=5"], "rsa.tau must be in [1, rsa.beta=4]"),
        (["prompt=hi", "rsa.beta=0"], "rsa.beta must be >= 1"),
        (["prompt=hi", "model.path=/no/such/model"], "is neither a preset"),
        (["prompt=" + "x" * 2100], "the model's context is 2048"),
        (["prompt=hi", "rsa.C=4", "rsa.N=4", "rsa.tau=500", "rsa.beta=1000"], "the model's context is 2048"),
        ([], "give exactly one of"),
        (["prompt=   "], "prompt is empty"),
        (["data.path=/no/such.jsonl"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(args, message, capsys, monkeypatch):
    def no_fleet(*_args, **_kwargs):
        raise AssertionError("the fleet must not start on bad input")

    monkeypatch.setattr(posttrain.rollout.fleet, "RolloutFleet", no_fleet)
    assert main(["rsa", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_malformed_jsonl_names_the_line(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    assert main(["rsa", f"data.path={data}"]) == 2
    assert f"{data}:2: needs a non-empty string 'prompt'" in capsys.readouterr().err
