"""Experiment trackers (`logging.report_to`): every numeric value metrics.jsonl receives reaches each tracker,
at its step. Each tracker is the real package, read back with its own reader (TensorBoard's event
accumulator, the wandb offline run file, the mlflow tracking client) and compared with a hand-written stream.
"""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto import wandb_internal_pb2

from posttrain.cli import main
from posttrain.config import schema
from posttrain.metrics import MetricsLogger, read_metrics
from posttrain.trackers import open_trackers
from tests.conftest import run_cli

CONFIG = {"stage": "sft", "trainer": {"lr": 0.5, "max_steps": 3}}
STREAM = [
    (1, {"loss": 2.5, "reward/mean": 0.25, "count": 3, "note": "text", "diverged": float("nan"), "flag": True}),
    (2, {"loss": 1.5, "reward/mean": 0.5, "count": 4}),
    (3, {"loss": 0.5, "reward/mean": 0.75, "count": 5}),
]
# What the trackers must hold: the numbers only (text, NaN and booleans stay in metrics.jsonl alone), all
# exact in float32, so that TensorBoard's storage compares equal.
EXPECTED = {
    "loss": {1: 2.5, 2: 1.5, 3: 0.5},
    "reward/mean": {1: 0.25, 2: 0.5, 3: 0.75},
    "count": {1: 3, 2: 4, 3: 5},
}


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch):
    """wandb in offline mode and mlflow on a local file store: both real, neither reaches a server."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return tmp_path


def tensorboard_scalars(directory) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(directory))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def _wandb_records(run_file) -> list[bytes]:
    """The records of a wandb run file: a 7-byte header, then LevelDB-log chunks in 32 KiB blocks."""
    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            records.append(pending)
            pending = b""
    return records


def wandb_history(run_dir) -> dict[str, dict[int, float]]:
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    history: dict[str, dict[int, float]] = {}
    for raw in _wandb_records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.HasField("history"):
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_"):
                    history.setdefault(key, {})[row["_step"]] = value
    return history


def mlflow_history(run_id: str) -> dict[str, dict[int, float]]:
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics
    return {key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in keys}


def test_every_numeric_metric_reaches_tensorboard_wandb_and_mlflow(offline_trackers):
    run_dir = offline_trackers / "run"
    run_dir.mkdir()
    trackers = open_trackers(["tensorboard", "wandb", "mlflow"], run_dir, CONFIG)
    logger = MetricsLogger(run_dir / "metrics.jsonl", trackers=trackers)
    for step, values in STREAM:
        logger.log(step, values)
    logger.close()

    assert read_metrics(run_dir / "metrics.jsonl")[0] == {"step": 1, **STREAM[0][1], "diverged": None}
    assert tensorboard_scalars(run_dir / "tensorboard") == EXPECTED
    assert wandb_history(run_dir) == EXPECTED
    run_ids = json.loads((run_dir / "trackers.json").read_text())
    assert mlflow_history(run_ids["mlflow"]) == EXPECTED
    params = MlflowClient().get_run(run_ids["mlflow"]).data.params
    assert params == {"stage": "sft", "trainer.lr": "0.5", "trainer.max_steps": "3"}


def test_a_resumed_run_continues_the_same_tracker_runs_from_its_checkpoint(offline_trackers):
    run_dir = offline_trackers / "run"
    run_dir.mkdir()
    first = MetricsLogger(run_dir / "metrics.jsonl", trackers=open_trackers(["tensorboard", "mlflow"], run_dir, CONFIG))
    for step, values in STREAM:
        first.log(step, values)
    first.close()
    ids = json.loads((run_dir / "trackers.json").read_text())

    # resumed from a step-2 checkpoint: step 3 is logged again, with what the resumed run measured
    trackers = open_trackers(["tensorboard", "mlflow"], run_dir, CONFIG, resume_step=2)
    resumed = MetricsLogger(run_dir / "metrics.jsonl", resume_step=2, trackers=trackers)
    resumed.log(3, {"loss": 0.25})
    resumed.log(4, {"loss": 0.125})
    resumed.close()

    assert json.loads((run_dir / "trackers.json").read_text()) == ids
    assert tensorboard_scalars(run_dir / "tensorboard")["loss"] == {1: 2.5, 2: 1.5, 3: 0.25, 4: 0.125}
    assert mlflow_history(ids["mlflow"])["loss"][4] == 0.125


def test_a_fresh_run_starts_new_tracker_runs(offline_trackers):
    run_dir = offline_trackers / "run"
    run_dir.mkdir()
    for _ in range(2):
        logger = MetricsLogger(run_dir / "metrics.jsonl", trackers=open_trackers(["mlflow"], run_dir, CONFIG))
        logger.log(1, {"loss": 1.0})
        logger.close()
    experiment = MlflowClient().get_experiment_by_name("posttrain")
    assert len(MlflowClient().search_runs([experiment.experiment_id])) == 2


def run_main(capsys, tmp_path, report_to: str) -> tuple[int, str]:
    code = main(["run", "stage=sft", f"logging.report_to={report_to}", f"run.root={tmp_path}/runs"])
    return code, capsys.readouterr().err


def test_an_unknown_tracker_is_one_line_before_any_work(tmp_path, capsys):
    code, err = run_main(capsys, tmp_path, "[comet]")
    assert code == 2 and not (tmp_path / "runs").exists()
    assert err == "error: logging.report_to: unknown tracker 'comet'; choose from tensorboard, wandb, mlflow, trackio\n"


def test_a_tracker_whose_package_is_missing_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    # a tracker whose package is absent, whatever this machine happens to have installed
    monkeypatch.setitem(schema.TRACKER_MODULES, "missing", ("posttrain_no_such_module", "pip install it"))
    code, err = run_main(capsys, tmp_path, "[tensorboard,missing]")
    assert code == 2 and not (tmp_path / "runs").exists()
    expected = "logging.report_to=missing needs the 'posttrain_no_such_module' package, which is not installed"
    assert err == f"error: {expected}: pip install it\n"


def test_report_to_accepts_trl_spellings():
    def resolved(value):
        return schema.LoggingConfig(report_to=value).report_to

    assert resolved("wandb") == ["wandb"]
    assert resolved("none") == resolved(None) == resolved([]) == []
    assert resolved(["TensorBoard", "tensorboard"]) == ["tensorboard"]
    assert schema.LoggingConfig(tensorboard=True).report_to == ["tensorboard"]  # the older key is an alias


@pytest.mark.slow
def test_sft_reports_what_metrics_jsonl_holds_to_tensorboard_and_wandb(offline_trackers):
    root = offline_trackers / "runs"
    args = ["stage=sft", "trainer.max_steps=3", "trainer.batch_size=4", "data.num_train=32", "eval.num_samples=4"]
    result = run_cli("run", *args, "logging.report_to=[tensorboard,wandb]", f"run.root={root}")
    assert result.returncode == 0, result.stderr
    run_dir = root / "sft"
    records = read_metrics(run_dir / "metrics.jsonl")
    jsonl = {key: {r["step"]: r[key] for r in records if key in r} for key in ("loss", "learning_rate", "data/kept")}
    assert sorted(jsonl["loss"]) == [1, 2, 3] and jsonl["data/kept"] == {0: 32}
    board, history = tensorboard_scalars(run_dir / "tensorboard"), wandb_history(run_dir)
    for key, by_step in jsonl.items():
        assert board[key] == pytest.approx(by_step), key
        assert history[key] == pytest.approx(by_step), key
