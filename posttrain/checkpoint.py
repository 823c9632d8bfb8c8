"""Checkpoint directories that are either complete or invisible.

Everything is written under `checkpoints/.partial/` and renamed to `checkpoints/step-<N>/` in one
atomic `rename` once complete, so a run killed mid-save leaves nothing `resume=auto` could pick up.
Old checkpoints are renamed away before deletion for the same reason.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_STEP_DIR = re.compile(r"^step-(\d+)$")
META_FILE = "posttrain-checkpoint.json"


class CheckpointManager:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = Path(root)
        self.keep = keep
        self.staging = self.root / ".partial"

    def steps(self) -> list[tuple[int, Path]]:
        """Committed checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _STEP_DIR.match(child.name)
            if match and (child / META_FILE).is_file():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def latest(self) -> Path | None:
        steps = self.steps()
        return steps[-1][1] if steps else None

    def commit(self, written: Path, step: int) -> Path:
        """Publish a fully written directory as `step-<step>` and drop checkpoints beyond `keep`."""
        (written / META_FILE).write_text(json.dumps({"step": step, "time": time.time()}))
        target = self.root / f"step-{step}"
        if target.exists():
            self._discard(target)
        written.rename(target)
        for _, old in self.steps()[: -self.keep]:
            self._discard(old)
        return target

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write a checkpoint with `write(directory)` and commit it."""
        directory = self.staging / f"step-{step}"
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        write(directory)
        return self.commit(directory, step)

    def _discard(self, directory: Path) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        trash = self.staging / f"trash-{directory.name}-{time.monotonic_ns()}"
        directory.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def step_of(checkpoint: Path) -> int:
    return json.loads((checkpoint / META_FILE).read_text())["step"]


def jsonable(state: Any) -> Any:
    """An RNG state (nested tuples, numpy arrays) as JSON lists; `tupled` turns it back."""
    if isinstance(state, tuple | list):
        return [jsonable(x) for x in state]
    return state.tolist() if hasattr(state, "tolist") else state


def tupled(state: Any) -> Any:
    return tuple(tupled(x) for x in state) if isinstance(state, list) else state
