"""Experiment trackers (`logging.report_to`): each receives every record metrics.jsonl receives, at its step.

TRL's names: tensorboard, wandb, mlflow, trackio. The packages are imported only when a run asks for
them; the config check (`posttrain.config.schema`) has already refused a tracker whose package is missing.
Each tracker reads its usual environment variables (WANDB_PROJECT, WANDB_MODE, MLFLOW_TRACKING_URI,
MLFLOW_EXPERIMENT_NAME, ...). A resumed run continues the same tracker run: the wandb and mlflow run ids
are kept in `<run.dir>/trackers.json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

DEFAULT_PROJECT = "posttrain"


class Tracker(Protocol):
    def log(self, step: int, values: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class _RunIds:
    """Tracker run ids saved in the run directory, so that a resumed run logs into the same tracker run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "trackers.json"

    def get(self, tracker: str) -> str | None:
        return json.loads(self.path.read_text()).get(tracker) if self.path.is_file() else None

    def set(self, tracker: str, run_id: str) -> None:
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.path.write_text(json.dumps({**saved, tracker: run_id}) + "\n")


class TensorBoardTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops the events after the checkpoint that the previous process had already written
        purge_step = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge_step)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None) -> None:
        import wandb

        ids = _RunIds(run_dir)
        run_id = ids.get("wandb") if resume_step is not None else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            name=str(run_dir),
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
        )
        ids.set("wandb", self.run.id)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient()
        ids = _RunIds(run_dir)
        run_id = ids.get("mlflow") if resume_step is not None else None
        if run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_PROJECT)
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run_id = self.client.create_run(experiment_id, run_name=str(run_dir)).info.run_id
            self._log_params(run_id, config)
            ids.set("mlflow", run_id)
        self.run_id = run_id

    def _log_params(self, run_id: str, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in _flatten(config).items()]
        for start in range(0, len(params), 100):  # the tracking API's limit per batch
            self.client.log_batch(run_id, params=params[start : start + 100])

    def log(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), timestamp, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class TrackioTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any], resume_step: int | None) -> None:
        import trackio

        self.trackio = trackio
        project = os.environ.get("TRACKIO_PROJECT", DEFAULT_PROJECT)
        resume = "allow" if resume_step is not None else "never"
        trackio.init(project=project, name=str(run_dir), config=config, resume=resume)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        self.trackio.log(dict(values), step=step)

    def close(self) -> None:
        self.trackio.finish()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


TRACKERS: dict[str, type] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "trackio": TrackioTracker,
}


def open_trackers(
    names: Sequence[str], run_dir: Path, config: dict[str, Any], resume_step: int | None = None
) -> list[Tracker]:
    """The trackers `logging.report_to` names, started for the run in `run_dir` (continued when resuming)."""
    return [TRACKERS[name](Path(run_dir), config, resume_step) for name in names]
