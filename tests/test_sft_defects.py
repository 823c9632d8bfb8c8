"""SFT behaviours a user meets: a quiet, exact resume; `logging.progress=off`; clean checkpoint staging;
`model.dtype` honoured or refused."""

from __future__ import annotations

import shutil

import pytest
import torch

from posttrain.cli import main
from posttrain.metrics import read_metrics
from tests.conftest import run_cli

TINY = ["stage=sft", "trainer.max_steps=4", "trainer.batch_size=4", "data.num_train=64", "eval.num_samples=4"]


def step_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("step ")]


@pytest.mark.slow
def test_resume_is_quiet_continues_the_token_count_and_leaves_no_model_card(tmp_path):
    args = [*TINY, "trainer.save_every=2", "trainer.keep_checkpoints=5", f"run.root={tmp_path}"]
    straight = run_cli("run", *args, "logging.progress=off")
    assert straight.returncode == 0, straight.stderr
    assert step_lines(straight.stdout) == []  # off: no per-step lines, in CI too
    run_dir = tmp_path / "sft"
    tokens = {r["step"]: r["num_tokens"] for r in read_metrics(run_dir / "metrics.jsonl") if "num_tokens" in r}
    assert sorted(tokens) == [1, 2, 3, 4]
    staging = run_dir / "checkpoints" / ".partial"
    assert not staging.exists() or not any(staging.iterdir()), sorted(p.name for p in staging.iterdir())

    # As if killed after the step-2 checkpoint: resume from it, with the default progress (plain lines in CI).
    shutil.rmtree(run_dir / "checkpoints" / "step-4")
    shutil.rmtree(run_dir / "final")
    (run_dir / "summary.json").unlink()
    resumed = run_cli("run", *args, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "missing keys" not in resumed.stdout + resumed.stderr
    assert [line.split(":")[0] for line in step_lines(resumed.stdout)] == ["step 3/4", "step 4/4"]
    again = {r["step"]: r["num_tokens"] for r in read_metrics(run_dir / "metrics.jsonl") if "num_tokens" in r}
    assert again == tokens  # the cumulative count carries on from the checkpoint instead of restarting at 0


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_float16_training_on_a_cpu_is_refused_before_any_work(tmp_path, capsys, device):
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("device=auto resolves to a GPU on this machine")
    code = main(["run", *TINY, "model.dtype=float16", f"device={device}", f"run.root={tmp_path}/runs"])
    err = capsys.readouterr().err
    assert code == 2
    expected = "model.dtype=float16 needs a GPU for SFT (fp16 mixed precision); on a CPU use float32 or bfloat16"
    assert err == f"error: {expected}\n"
    assert not (tmp_path / "runs").exists()
