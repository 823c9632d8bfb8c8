import json

from posttrain.metrics import MetricsLogger, read_metrics
from posttrain.plots import plot_metrics
from posttrain.trackers import open_trackers


def test_resume_cuts_the_stream_back_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for step in range(1, 8):
        logger.log(step, {"loss": 1.0 / step})
    logger.close()
    with path.open("a") as f:
        f.write('{"step": 8, "lo')  # torn line from a killed process
    resumed = MetricsLogger(path, resume_step=5)
    for step in range(6, 9):
        resumed.log(step, {"loss": 0.0})
    resumed.close()
    assert [r["step"] for r in read_metrics(path)] == list(range(1, 9))


def test_fresh_logger_starts_empty_and_values_are_json(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 99}\n')
    logger = MetricsLogger(path)
    logger.log(1, {"loss": float("nan"), "n": 3})
    logger.close()
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 1, "loss": None, "n": 3}]


def test_tensorboard_and_plots(tmp_path):
    logger = MetricsLogger(tmp_path / "m.jsonl", trackers=open_trackers(["tensorboard"], tmp_path, {}))
    for step in range(1, 5):
        logger.log(step, {"loss": 1.0 / step})
    logger.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    written = plot_metrics(tmp_path / "m.jsonl", tmp_path / "plots", {"loss": ["loss"], "empty": ["nothing"]})
    assert [p.name for p in written] == ["loss.png"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
