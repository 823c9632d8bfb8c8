"""Per-step metrics: one JSON object per line in metrics.jsonl, mirrored to the experiment trackers of
`logging.report_to` (posttrain/trackers.py): each receives every numeric value of every record.

On resume the file is cut back to the checkpoint's step first, so the stream never has a gap or a
duplicated step, however the previous process died.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from posttrain.trackers import Tracker


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; a torn last line (killed mid-write) is ignored."""
    records = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    def __init__(self, path: Path, *, resume_step: int | None = None, trackers: Sequence[Tracker] = ()) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None:
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a")
        self._trackers = list(trackers)

    def log(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **{k: _jsonable(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        numbers = {k: v for k, v in record.items() if k != "step" and _is_number(v)}
        if numbers:
            for tracker in self._trackers:
                tracker.log(step, numbers)

    def close(self) -> None:
        self._file.close()
        for tracker in self._trackers:
            tracker.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
