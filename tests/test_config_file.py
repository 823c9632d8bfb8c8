"""`--config FILE`: a user's YAML layered between the stage's defaults and key=value; `posttrain config show`."""

from __future__ import annotations

import json

import pytest
import yaml

from posttrain.cli import main
from posttrain.config import compose, to_object
from posttrain.errors import UserError
from tests.conftest import run_cli


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("stage: sft\ntrainer:\n  max_steps: 7\n  lr: 0.01\nseed: 5\n")
    return path


def test_the_file_sits_between_the_stage_defaults_and_the_command_line(user_file):
    cfg = to_object(compose("sft", ["trainer.lr=0.5"], user_file=user_file))
    assert cfg.trainer.max_steps == 7  # the file over configs/stages/sft.yaml's 800
    assert cfg.trainer.lr == 0.5  # key=value over the file's 0.01
    assert cfg.seed == 5
    assert cfg.trainer.batch_size == 32  # untouched: configs/stages/sft.yaml
    assert cfg.trainer.weight_decay == 0.0  # untouched: configs/defaults.yaml


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("trainer:\n  max_stepz: 7\n", ": unknown config key 'trainer.max_stepz'; did you mean 'trainer.max_steps'?"),
        ("wandb: true\n", ": unknown config key 'wandb'; valid top-level keys: curriculum, data, device, envs, "),
        ("trainer:\n  max_steps: lots\n", ": bad value for 'trainer.max_steps': "),
        ("trainer: [1, 2\n", " is not valid YAML: "),
        ("- trainer.lr=1\n", " must hold a mapping of config keys, not list"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(tmp_path, content, message):
    path = tmp_path / "my.yaml"
    path.write_text(content)
    with pytest.raises(UserError) as error:
        compose("sft", [], user_file=path)
    assert str(error.value).startswith(f"config file {str(path)!r}{message}") and "\n" not in str(error.value)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"^config file '.*nope\.yaml' does not exist$"):
        compose("sft", [], user_file=tmp_path / "nope.yaml")


def test_config_show_prints_the_resolved_config_and_exits_0(tmp_path, capsys, user_file):
    code = main(["config", "show", "--config", str(user_file), "trainer.lr=0.5", f"run.root={tmp_path}/runs"])
    shown = yaml.safe_load(capsys.readouterr().out)
    assert code == 0
    assert shown["stage"] == "sft"  # from the file's `stage:`
    assert shown["trainer"]["max_steps"] == 7 and shown["trainer"]["lr"] == 0.5 and shown["seed"] == 5
    assert shown["run"]["dir"] == f"{tmp_path}/runs/sft"  # interpolations resolved
    assert not (tmp_path / "runs").exists()


def test_config_show_of_another_stage_and_its_errors(capsys):
    assert main(["config", "show", "stage=rlve", "rl.group_size=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["stage"] == "rlve" and shown["rl"]["group_size"] == 3
    assert main(["config", "show", "stage=rlve", "trainer.max_steps=0"]) == 2
    assert capsys.readouterr().err == "error: trainer.max_steps must be >= 1\n"
    assert main(["config", "show", "stage=sfft"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown stage 'sfft'; did you mean 'sft'? (available: sft, ")
    assert main(["config", "show"]) == 2
    assert capsys.readouterr().err.startswith("error: missing stage=<name>")


def test_run_with_a_bad_file_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_stepz: 7\n")
    code = main(["run", "--config", str(bad), "stage=sft", f"run.root={tmp_path}/runs"])
    assert code == 2 and "unknown config key 'trainer.max_stepz'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_uses_the_file(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(
        "stage: sft\ntrainer: {max_steps: 2, batch_size: 4}\ndata: {num_train: 16}\neval: {num_samples: 2}\n"
    )
    result = run_cli("run", "--config", str(config), "trainer.max_steps=3", f"run.root={tmp_path}/runs")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "sft"
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3  # key=value over the file
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["batch_size"] == 4 and saved["data"]["num_train"] == 16  # from the file


PLUGIN = (
    "from posttrain.rl.advantages import register_advantage\n"
    "@register_advantage('{name}')\n"
    "def centred(rewards, group_ids):\n"
    "    return rewards - rewards.mean()\n"
)


@pytest.fixture
def advantage_plugin(tmp_path):
    """A plugin file registering an advantage; unregistered afterwards so nothing leaks into other tests."""
    from posttrain.rl.advantages import ADVANTAGE_REGISTRY

    name = "plugin_centred_advantage"
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN.format(name=name))
    yield name, path
    ADVANTAGE_REGISTRY.pop(name, None)


@pytest.mark.parametrize("where", ["command line", "file"])
def test_config_show_loads_the_plugins_a_run_would(tmp_path, capsys, advantage_plugin, where):
    name, plugin = advantage_plugin
    config = tmp_path / "rl.yaml"
    lines = [f"rl:\n  advantage: {name}\n"] + ([f"plugins: [{plugin}]\n"] if where == "file" else [])
    config.write_text("".join(lines))
    extra = [f"plugins=[{plugin}]"] if where == "command line" else []
    assert main(["config", "show", "--config", str(config), "stage=rlve", *extra]) == 0, capsys.readouterr().err
    assert yaml.safe_load(capsys.readouterr().out)["rl"]["advantage"] == name


def test_a_stage_built_on_demand_gets_the_files_shared_keys_and_the_command_line_wins(tmp_path, monkeypatch):
    """`run stage=rlve --config f.yaml` builds sft first: the file's run.root, seed and plugins reach it, its other
    keys (the requested stage's) do not, and key=value still beats the file."""
    from posttrain import runner

    config = tmp_path / "f.yaml"
    config.write_text(f"run:\n  root: {tmp_path}/my runs\nseed: 7\ndevice: cpu\nrl:\n  lr: 0.001\n")
    calls = []
    monkeypatch.setattr(runner, "run_stage", lambda stage, overrides: calls.append((stage, overrides)))
    runner.build_previous("sft", "x/final", ["rl.lr=0.01", "sft.trainer.max_steps=3", "device=auto"], str(config))
    [(stage, forwarded)] = calls
    assert stage == "sft"
    cfg = to_object(compose("sft", runner.scoped_overrides("sft", forwarded)))
    assert cfg.run.root == f"{tmp_path}/my runs" and cfg.seed == 7  # from the file
    assert cfg.trainer.max_steps == 3 and cfg.device == "auto"  # the command line, over the file's device: cpu
    assert not any(item.startswith("rl.") for item in forwarded)  # rlve's keys stay with rlve


def test_config_show_refuses_what_run_refuses(capsys):
    """The checks `run` makes before any work: unread keys and the stage's own checks (registries, envs)."""
    assert main(["config", "show", "stage=rlve", "trainer.lr=0.1"]) == 2
    assert capsys.readouterr().err == "error: stage=rlve does not read 'trainer.lr'; use 'rl.lr'\n"
    assert main(["config", "show", "stage=rlve", "rl.advantage=nosuch"]) == 2
    assert capsys.readouterr().err.startswith("error: rl.advantage must be one of grpo, maxrl, rloo")
    assert main(["config", "show", "stage=warmup", "envs.names=[nosuch_env]"]) == 2
    assert "nosuch_env" in capsys.readouterr().err
    # rsa.* shapes Markovian RSA rollouts; without them an RL stage reads only the templates, for TTC prompts
    assert main(["config", "show", "stage=rlve", "rsa.N=3"]) == 2
    assert capsys.readouterr().err.startswith("error: stage=rlve does not read 'rsa.N'; rsa.* shapes Markovian RSA")
    assert main(["config", "show", "stage=rlve", "rollout.strategy=markovian_rsa", "rsa.N=4", "rsa.C=2"]) == 0
    template = "rsa.aggregation_template='{problem} {candidates}'"
    assert main(["config", "show", "stage=rlve", template]) == 2  # rlve asks no TTC prompts by default
    assert main(["config", "show", "stage=rlve", "ttc.fraction=0.5", template]) == 0
    capsys.readouterr()
    raw_logit = "rewards.components=[{name: reward_model, kwargs: {path: rm}}]"  # under rlhf's ifeval gate
    assert main(["config", "show", "stage=rlhf", raw_logit]) == 2
    assert capsys.readouterr().err.startswith("error: rewards.gate gives failing samples 0, but rewards.components")


def test_config_show_of_a_sequence_is_one_document_per_stage(capsys, tmp_path):
    assert main(["config", "show", "stage=mathcode", "rl.lr=0.003", "model.path=zaya-tiny"]) == 0
    phase1, phase2 = yaml.safe_load_all(capsys.readouterr().out)
    assert (phase1["stage"], phase2["stage"]) == ("mathcode_phase1", "mathcode_phase2")
    assert phase1["rl"]["lr"] == phase2["rl"]["lr"] == 0.003  # an unscoped key reaches every stage
    assert phase1["model"]["path"] == "zaya-tiny" and phase2["model"]["path"] is None  # only the start takes it
    assert main(["config", "show", "stage=all"]) == 0
    shown = [doc["stage"] for doc in yaml.safe_load_all(capsys.readouterr().out)]
    assert shown[0] == "sft" and shown[-1] == "rlhf" and "rlve" in shown
    assert main(["config", "show", "stage=all", "rl.nosuch=1"]) == 2
    assert "rl.nosuch" in capsys.readouterr().err
    assert main(["config", "show", "stage=mathcode", "trainer.lr=0.1"]) == 2  # a key no stage of the group reads
    assert capsys.readouterr().err == "error: none of the stages mathcode_phase1, mathcode_phase2 reads 'trainer.lr'\n"
