"""PNG training curves from metrics.jsonl, drawn at the end of every run."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from posttrain.metrics import read_metrics


def plot_metrics(metrics_file: Path, out_dir: Path, panels: Mapping[str, Sequence[str]]) -> list[Path]:
    """One PNG per panel name, each drawing the listed metric keys (`prefix/*` globs) against step.

    Panels with nothing to draw are skipped.
    """
    records = read_metrics(metrics_file)
    present = sorted({key for record in records for key in record})
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys in panels.items():
        figure = Figure(figsize=(6, 3.5), dpi=110)
        axis = figure.subplots()
        drawn = False
        for key in [k for pattern in keys for k in fnmatch.filter(present, pattern)]:
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, label=key, linewidth=1.2)
                drawn = True
        if drawn:
            axis.set_xlabel("step")
            axis.set_title(name)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
            figure.tight_layout()
            path = out_dir / f"{name}.png"
            figure.savefig(path)
            written.append(path)
    return written
