"""Bad input: one clear line, exit code 2, nothing written or overwritten."""

import json

import pytest

from posttrain.cli import main


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stage=sfx"], "unknown stage 'sfx'; did you mean 'sft'?"),
        (["plugins=[/no/such/plugin.py]", "stage=sft"], "plugins: '/no/such/plugin.py': no such file"),
        (["plugins=[no_such_plugin_module]", "stage=sft"], "plugins: 'no_such_plugin_module': no module named"),
        (["stage=sft", "trainer.max_stepz=3"], "did you mean 'trainer.max_steps'?"),
        (["stage=sft", "trainer.max_steps=-3"], "trainer.max_steps must be >= 1"),
        (["stage=sft", "model.path=/nonexistent/model"], "model.path='/nonexistent/model' is neither a preset"),
        (["stage=sft", "data.path=/nonexistent/data.jsonl"], "does not exist"),
        (["stage=sft", "data.tasks=[ad]"], "'ad'"),
        ([], "missing stage=<name>"),
        # rl.param_groups: checked against the model's parameter names (a meta-device skeleton) up front
        (["stage=rlve", "model.path=llama-tiny", "rl.param_groups=[{match: nosuch, lr: 1}]"], "matches no parameter"),
        (["stage=rlve", "model.path=llama-tiny", "rl.param_groups=[{match: '(', lr: 1}]"], "not a regular expression"),
        (["stage=rlve", "model.path=llama-tiny", "rl.param_groups=[{match: ., lr: 0}]"], "freezes every parameter"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    code, err = run_main(capsys, "run", *args, f"run.root={tmp_path}/runs")
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_corrupt_model_dir_and_unreadable_data(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{not json")
    code, err = run_main(capsys, "run", "stage=sft", f"model.path={model_dir}", f"run.root={tmp_path}/runs")
    assert code == 2 and "unreadable config.json" in err

    data = tmp_path / "data.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{broken\n')
    code, err = run_main(capsys, "run", "stage=sft", f"data.path={data}", f"run.root={tmp_path}/runs")
    assert code == 2 and "data.path" in err
    wrong_columns = tmp_path / "wrong.jsonl"
    wrong_columns.write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    code, err = run_main(capsys, "run", "stage=sft", f"data.path={wrong_columns}", f"run.root={tmp_path}/runs")
    assert code == 2 and "needs a 'messages' column" in err
    assert not (tmp_path / "runs").exists()


def test_existing_run_is_never_overwritten_without_consent(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "sft"
    (run_dir / "checkpoints" / "step-1").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-1" / "posttrain-checkpoint.json").write_text('{"step": 1}')
    (run_dir / "config.yaml").write_text("stage: sft\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    code, err = run_main(capsys, "run", "stage=sft", f"run.root={tmp_path}/runs")
    assert code == 2 and "already holds a run" in err
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n'

    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    code, err = run_main(capsys, "run", "stage=sft", f"run.dir={other}", "run.overwrite=true")
    assert code == 2 and "not a posttrain run" in err
    assert (other / "thesis.tex").read_text() == "precious"


def test_resume_into_a_run_of_another_stage_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "sft"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("stage: rlve\n")
    code, err = run_main(capsys, "run", "stage=sft", f"run.root={tmp_path}/runs", "resume=auto")
    assert code == 2 and "holds a 'rlve' run" in err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "posttrain run stage=sft" in out and "resume=auto" in out
