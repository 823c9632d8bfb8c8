"""`posttrain run stage=rlve` end to end through the real CLI: outputs, build-on-demand, resume, async, RSA."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.cli import main
from posttrain.metrics import read_metrics
from tests.rl_loop.conftest import REFERENCE, TINY, popen, posttrain

pytestmark = pytest.mark.slow

PER_STEP = [
    "reward/mean", "reward/std", "accuracy", "pass_rate/add", "difficulty/add", "response_length", "staleness",
    "generate_tokens_per_s", "time/generate", "time/verify", "time/learn", "time/sync",
]  # fmt: skip
LEARNED = ["learn/clip_frac", "learn/entropy", "learn/kl_behaviour", "learn/train_tokens_per_s", "learn/loss"]
# What a resumed sync-mode run must reproduce exactly (everything but wall-clock timings).
DETERMINISTIC = ["reward/mean", "accuracy", "sampled_difficulty/add", "samples_trained"]


SIDES = ("before", "after")


def weights(directory) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_run_writes_config_metrics_checkpoints_final_plots_and_before_after(reference):
    run_dir = reference.dir
    assert (run_dir / "config.yaml").is_file()
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for record in records:
        assert set(PER_STEP) <= record.keys(), set(PER_STEP) - record.keys()
        if record["samples_trained"]:
            assert set(LEARNED) <= record.keys(), set(LEARNED) - record.keys()
        assert 0 <= record["accuracy"] <= 1 and record["pass_rate/add"] == record["accuracy"]  # one env
        assert 0 < record["response_length"] <= 8  # rollout.max_new_tokens
        assert record["staleness"] == 0  # synchronous by this stage's default
    assert any(r["samples_trained"] for r in records)

    # final/ is the learner after the last step: an HF model equal to the last checkpoint's policy,
    # and different from the SFT model it started from.
    final = run_dir / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    AutoTokenizer.from_pretrained(final)
    assert type(model).__name__ == "ZayaForCausalLM"
    trained, last = weights(final), weights(run_dir / "checkpoints" / "step-5" / "policy")
    assert all(torch.equal(trained[k], last[k]) for k in trained)
    start = weights(reference.sft_final)
    assert any(not torch.equal(trained[k], start[k]) for k in trained)
    checkpoint = run_dir / "checkpoints" / "step-5"
    assert {"learner.pt", "loop.json", "torch_rng.pt", "policy"} <= {p.name for p in checkpoint.iterdir()}

    for plot in ("reward", "accuracy", "difficulty"):
        assert (run_dir / "plots" / f"{plot}.png").stat().st_size > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 5
    labels = ["greedy", "T=1"]  # the sweep (TINY: [1.0]), with greedy and the sampling temperature always in it
    for side in SIDES:
        row = summary[side]["add"]
        assert list(row) == labels
        assert row["greedy"]["n"] == 8 and row["greedy"]["pass@4"] is None
        for label in labels[1:]:  # 8 prompts x 4 samples each
            assert row[label]["pass@1"] in {k / 32 for k in range(33)}
            assert row[label]["pass@1"] <= row[label]["pass@4"]
    comparison = summary["comparison"]["add"]
    best = max(labels, key=lambda label: summary["before"]["add"][label]["pass@1"])
    assert comparison["best_before"]["pass@1"] == summary["before"]["add"][best]["pass@1"]
    out = reference.result.stdout
    table = out[out.index("best pass@1") - 1000 :]
    t1 = next(line for line in table.splitlines() if line.strip().startswith("T=1 "))
    cells = [f"{summary[side]['add']['T=1'][key]:.1%}" for side in SIDES for key in ("pass@1", "pass@4")]
    assert t1.split()[1:5] == cells and "<- RL samples here" in t1
    assert f"gain over the best baseline {100 * comparison['gain_over_best_baseline']:+.1f} points" in out


def test_resuming_a_finished_run_says_so_and_changes_nothing(reference):
    before = {p: p.stat().st_mtime_ns for p in reference.dir.rglob("*") if p.is_file()}
    resumed = posttrain(*REFERENCE, f"model.path={reference.sft_final}", f"run.root={reference.root}", "resume=auto")
    assert resumed.returncode == 0 and "already finished its 5 steps" in resumed.stdout, resumed.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in reference.dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("stage", ["sft", "rlve"])
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("device=cuda", "device=cuda but no GPU is visible"),
        ("model.lora.target_modules=[nonexistent]", "'nonexistent' names no module of"),
    ],
)
def test_values_that_would_crash_mid_run_are_one_line_before_any_work_in_every_stage(
    stage, override, message, sft_model, tmp_path, capsys
):
    args = [f"stage={stage}", f"model.path={sft_model}", f"run.root={tmp_path}", "model.lora.r=4", override]
    code = main(["run", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / stage).exists()


def test_unset_model_path_builds_the_previous_stage_first_with_its_scoped_overrides(reference):
    assert "running stage 'sft' first" in reference.built.stdout  # warmup's previous stage, built on demand
    sft_config = (reference.root / "sft" / "config.yaml").read_text()
    assert "max_steps: 30" in sft_config and "num_train: 2000" in sft_config  # the sft.* overrides
    assert [r["step"] for r in read_metrics(reference.root / "sft" / "metrics.jsonl")][-1] == 30
    warmup_config = (reference.root / "warmup" / "config.yaml").read_text()
    assert f"path: {reference.sft_final}" in warmup_config and "max_steps: 1" in warmup_config


def test_resume_after_sigkill_has_no_gap_and_matches_the_uninterrupted_run(reference, tmp_path):
    args = [*REFERENCE, f"model.path={reference.sft_final}", f"run.root={tmp_path}"]
    process = popen(*args)
    run_dir = tmp_path / "rlve"
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "step-2").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "final").exists()
    before_kill = read_metrics(run_dir / "metrics.jsonl")[:2]

    resumed = posttrain(*args, "resume=auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records, expected = read_metrics(run_dir / "metrics.jsonl"), read_metrics(reference.dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[:2] == before_kill  # steps 1-2 were kept, not re-run (their wall-clock timings are unchanged)
    # Sync mode on CPU is exactly reproducible: same problems, samples, curriculum and updates.
    for got, want in zip(records, expected, strict=True):
        assert {k: got.get(k) for k in DETERMINISTIC} == {k: want.get(k) for k in DETERMINISTIC}, got["step"]
        # The target curriculum's level sums a set of string keys, whose order follows the per-process
        # hash seed: equal states can report levels that differ in the last bit.
        assert got["difficulty/add"] == pytest.approx(want["difficulty/add"], rel=1e-12, abs=1e-12)
        # Same samples and updates; the loss, a float sum, has been seen to differ in the 7th digit across processes.
        assert ("learn/loss" in got) == ("learn/loss" in want)
        assert got.get("learn/loss", 0.0) == pytest.approx(want.get("learn/loss", 0.0), rel=1e-6, abs=1e-6)
    assert len({r["difficulty/add"] for r in records}) > 1  # the curriculum really moved across the kill
    state, want_state = (
        json.loads((d / "checkpoints" / "step-5" / "loop.json").read_text()) for d in (run_dir, reference.dir)
    )
    assert state["source"] == want_state["source"]
    got, want = weights(run_dir / "final"), weights(reference.dir / "final")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_async_markovian_rsa_trains_both_rounds_and_an_accepted_config_drops_nothing(sft_model, tmp_path):
    """Weights synced every 2 steps with generation one step ahead: rollouts reach 2 versions of age, which
    rl.max_staleness=2 admits, so no batch is generated only to be dropped. RSA trees are produced in the
    background thread like single samples; round 1 is the final round, sampled at rsa.final_temperature."""
    result = posttrain(
        *TINY, f"model.path={sft_model}", f"run.root={tmp_path}", "trainer.max_steps=4",
        "rl.max_staleness=2", "rl.sync_every=2", "rl.dynamic_sampling=false",
        "rollout.strategy=markovian_rsa", "rsa.N=4", "rsa.C=2", "rsa.T=1", "rsa.beta=8", "rsa.tau=4",
        "rsa.train_rounds=[0,1]", "rsa.final_top_p=1.0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(tmp_path / "rlve" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["stale_dropped"] == 0 for r in records)
    assert records[0]["staleness"] == 0  # nothing was prefetched before step 1
    assert max(r["staleness"] for r in records) == 2  # the bound the config check uses is reached
    for record in records:
        # 4 problems x N=4 chains in each round, all kept (no dynamic sampling)
        assert record["samples_trained/round0"] == 16 and record["samples_trained/round1"] == 16
        assert record["samples_trained"] == 32 and "learn/loss" in record


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("envs.names=[add,no_such_env]", "no_such_env"),
        ("rl.group_size=1", "rl.group_size"),
        ("rl.prompts_per_step=0", "rl.prompts_per_step"),
        ("rl.advantage=maxrll", "rl.advantage"),
        ("rl.max_staleness=0 rl.sync_every=2", "rl.max_staleness"),  # would train on stale rollouts
        ("rl.max_staleness=1 rl.sync_every=2", "rl.max_staleness"),  # async: would generate batches and drop them
        ("rl.bogus=1", "rl.bogus"),
        ("rollout.engine=nope", "rollout.engine must be one of"),
        ("trainer.lr=0.1", "does not read 'trainer.lr'; use 'rl.lr'"),
        ("rewards.gate_threshold=0.5", "rewards.* grade prompt datasets"),
        ("rollout.strategy=markovian_rsa rsa.T=1", "rsa.final_temperature/rsa.final_top_p"),  # trained with top-p
        ("rollout.top_k=5", "without top-p/top-k truncation"),
        ("rl.advantage=maxrl envs.names=[rg:chain_sum:lenient]", "can give negative rewards"),
        ("rl.loss=dppo rl.old_logprobs=recompute", "rl.old_logprobs=behaviour"),
        ("eval.temperature=1.0", "does not read 'eval.temperature'; use 'eval.temperatures'"),
    ],
)
def test_bad_input_exits_2_before_building_anything(tmp_path, capsys, override, message):
    # No model.path: a valid command would build the sft stage first; a bad one must fail before that.
    code = main(["run", *TINY, f"run.root={tmp_path / 'runs'}", *override.split()])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "runs").exists()


def test_resume_with_another_optimizer_layout_exits_2_and_writes_nothing(reference, tmp_path, capsys):
    """A checkpoint's optimizer state fits only the layout that saved it; the mismatch is found up front."""
    config = (reference.dir / "config.yaml").read_text()
    for override in (r"rl.param_groups=[{match: '^model\.norm\.weight$', lr: 0.05}]", "rl.optimizer=muon"):
        args = [*REFERENCE, f"model.path={reference.sft_final}", f"run.root={tmp_path}", f"resume={reference.dir}"]
        code = main(["run", *args, override])
        err = capsys.readouterr().err
        assert code == 2 and "was saved with another rl.optimizer / rl.param_groups" in err, err
        assert err.count("\n") == 1 and not (tmp_path / "rlve").exists()
    assert (reference.dir / "config.yaml").read_text() == config
