"""What a stage gets from `posttrain run`: its config, run directory, checkpoints, metrics and resume point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posttrain.checkpoint import CheckpointManager
from posttrain.config import Config
from posttrain.metrics import MetricsLogger


@dataclass
class RunContext:
    cfg: Config
    dir: Path
    checkpoints: CheckpointManager
    resume_from: Path | None
    progress: bool
    metrics: MetricsLogger

    @property
    def final(self) -> Path:
        return self.dir / "final"

    @property
    def plots(self) -> Path:
        return self.dir / "plots"
