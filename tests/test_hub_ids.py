"""Hub ids as `model.path` / `data.path`: fetched when online, one line when they cannot be.

"Online" is a local server speaking the Hub's HTTP API (tests/hub_server.py, reached through HF_ENDPOINT),
so the real download code of transformers and datasets runs without network.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from posttrain.cli import main
from posttrain.hub import is_hub_id
from posttrain.models import load_model
from posttrain.rollout.session import worker_env
from tests.conftest import cli_env
from tests.hub_server import serve_hub

QUICK = ["stage=sft", "trainer.max_steps=1", "trainer.batch_size=2", "eval.num_samples=1", "logging.progress=off"]
FAILED = "is not a local path and could not be fetched from the Hugging Face Hub"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct", True),
        ("gpt2", True),
        ("openai/gsm8k", True),
        ("./my-base", False),
        ("../models/base", False),
        ("/nonexistent/model", False),
        ("runs/sft/final", False),  # deeper than org/name: a path
        ("~/models/base", False),
        ("org/name/", False),
    ],
)
def test_what_counts_as_a_hub_id(value, expected):
    assert is_hub_id(value) is expected


def test_an_existing_local_folder_is_never_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("org/name")


def online_env(endpoint: str, home) -> dict[str, str]:
    env = {k: v for k, v in cli_env().items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(home)}


def posttrain(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "posttrain.cli", "run", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def hub_repos(tmp_path):
    """A tiny model and a two-row SFT dataset, laid out as Hub repositories."""
    root = tmp_path / "hub"
    model, tokenizer = load_model("zaya-tiny", seed=0)
    model.save_pretrained(root / "models" / "org" / "tiny")
    tokenizer.save_pretrained(root / "models" / "org" / "tiny")
    rows = [{"prompt": f"What is {a}+{a}?", "completion": f"<answer>{2 * a}</answer>"} for a in (1, 2)]
    data = root / "datasets" / "org" / "sums" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow
def test_online_a_model_and_a_dataset_are_fetched_by_hub_id(tmp_path, hub_repos):
    with serve_hub(hub_repos) as (endpoint, requests):
        env = online_env(endpoint, tmp_path / "hf-home")
        result = posttrain(env, *QUICK, "model.path=org/tiny", "data.path=org/sums", f"run.root={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "/org/tiny/resolve/" + "0" * 40 + "/model.safetensors" in requests
    assert "/datasets/org/sums/resolve/" + "0" * 40 + "/train.jsonl" in requests
    final = tmp_path / "runs" / "sft" / "final"
    assert json.loads((final / "config.json").read_text())["model_type"] == "zaya"
    assert json.loads((tmp_path / "runs" / "sft" / "summary.json").read_text())["data"]["kept"] == 2


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("model.path=org/missing", "no such model on the Hub (or it is private: log in with `hf auth login`)"),
        ("data.path=org/missing", "no such dataset on the Hub (or it is private: log in with `hf auth login`)"),
    ],
)
def test_online_an_id_the_hub_does_not_have_is_one_line(tmp_path, hub_repos, override, reason):
    with serve_hub(hub_repos) as (endpoint, _):
        result = posttrain(online_env(endpoint, tmp_path / "hf-home"), *QUICK, override, f"run.root={tmp_path}/runs")
    key, value = override.split("=")
    assert result.returncode == 2
    assert result.stderr == f"error: {key}={value!r} {FAILED}: {reason}\n"
    assert not (tmp_path / "runs").exists()


def test_with_no_network_the_error_is_one_line(tmp_path):
    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = posttrain(
            online_env(endpoint, tmp_path / "hf-home"), *QUICK, "model.path=org/tiny", f"run.root={tmp_path}/runs"
        )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: model.path='org/tiny' {FAILED}: the Hub is unreachable (")
    assert result.stderr.endswith("; with the files already cached, set HF_HUB_OFFLINE=1\n")


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = main(["run", *QUICK, *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("key", "value"), [("model.path", "no-such-org/no-such-model"), ("data.path", "no-such/data")])
def test_offline_an_uncached_id_is_one_line(tmp_path, capsys, key, value):
    code, err = run_main(capsys, f"{key}={value}", f"run.root={tmp_path}/runs")  # tests run with HF_HUB_OFFLINE=1
    assert code == 2
    assert err == f"error: {key}={value!r} {FAILED}: it is not in the local cache and HF_HUB_OFFLINE=1 is set\n"
    assert not (tmp_path / "runs").exists()


def test_local_paths_keep_their_own_messages(tmp_path, capsys):
    code, err = run_main(capsys, "model.path=./no/such/dir", f"run.root={tmp_path}/runs")
    expected = "model.path='./no/such/dir' is neither a preset (llama-tiny, zaya-tiny), a directory nor a Hugging Face"
    assert code == 2 and err.startswith(f"error: {expected}")
    code, err = run_main(capsys, "data.path=missing.jsonl", f"run.root={tmp_path}/runs")
    assert code == 2 and err == "error: data.path='missing.jsonl' does not exist\n"


def test_ray_workers_follow_the_users_hub_setting(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    assert "HF_HUB_OFFLINE" not in worker_env() and "HF_DATASETS_OFFLINE" not in worker_env()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert worker_env()["HF_HUB_OFFLINE"] == "1"
