import json

from posttrain.cli import main
from posttrain.data.from_envs import is_heldout
from tests.conftest import run_cli


def test_eval_reports_accuracy_per_env_on_heldout_prompts(tmp_path):
    out = tmp_path / "report.json"
    result = run_cli(
        "eval",
        "model.path=zaya-tiny",
        "envs.names=[add,sort]",
        "eval.num_samples=8",
        "eval.difficulty=0",
        f"output={out}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout)
    assert set(report["envs"]) == {"add", "sort"} and report["difficulty"] == 0
    for row in report["envs"].values():
        assert row["n"] == 8 and 0.0 <= row["accuracy"] <= row["format_ok"] <= 1.0
    # an untrained model does not produce well-formed answers
    assert report["mean_accuracy"] == 0.0


def test_sampled_eval_averages_every_answer_and_counts_prompts(tmp_path):
    out = tmp_path / "report.json"
    args = ["model.path=zaya-tiny", "envs.names=[add]", "eval.num_samples=5", "eval.temperature=1.0"]
    result = run_cli("eval", *args, "eval.samples=3", f"output={out}")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert (report["temperature"], report["samples"], report["envs"]["add"]["n"]) == (1.0, 3, 5)
    assert report["envs"]["add"]["accuracy"] in {k / 15 for k in range(16)}


def test_heldout_problems_are_the_ones_training_skips():
    from posttrain.data.from_envs import heldout_problems

    pairs = heldout_problems("add", 1, 20, seed=0)
    assert len(pairs) == 20 and all(is_heldout(p.prompt) for p, _ in pairs)


def test_eval_bad_input(capsys):
    assert main(["eval", "envs.names=[add]"]) == 2
    assert "missing model.path" in capsys.readouterr().err
    assert main(["eval", "model.path=zaya-tiny", "envs.names=[addd]"]) == 2
    assert "did you mean 'add'" in capsys.readouterr().err
    assert main(["eval", "model.path=zaya-tiny", "envs.names=[add]", "eval.samples=4"]) == 2
    assert "eval.samples > 1 needs eval.temperature > 0" in capsys.readouterr().err
