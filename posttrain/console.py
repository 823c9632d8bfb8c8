"""Terminal behaviour shared by every command: progress bars on a terminal, quiet in CI and pipes."""

from __future__ import annotations

import os
import sys


def progress_enabled(setting: str = "auto") -> bool:
    if setting != "auto":
        return setting == "on"
    return sys.stderr.isatty() and not os.environ.get("CI")


def quiet_library_progress_bars() -> None:
    """datasets and transformers draw their own bars (tokenizing, loading weights); silence them. Libraries not
    imported yet read the environment when they are (so a CLI error never waits for their import)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


class StepReporter:
    """Progress of a training loop: a bar on a terminal, else a plain line every `every_s` seconds (CI logs)."""

    KEYS = (("reward/mean", "reward"), ("accuracy", "accuracy"), ("learn/loss", "loss"))

    def __init__(self, total: int, bar: bool, *, desc: str = "steps", every_s: float = 30.0) -> None:
        import time

        self.total, self.desc, self.every_s, self._clock = total, desc, every_s, time.monotonic
        self.started = self.last_line = self._clock()
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, step: int, metrics: dict) -> None:
        shown = {label: metrics[key] for key, label in self.KEYS if isinstance(metrics.get(key), int | float)}
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=True)
            return
        now = self._clock()
        if now - self.last_line >= self.every_s or step == self.total or step == 1:
            self.last_line = now
            rate = (now - self.started) / max(step, 1)
            numbers = " ".join(f"{k}={v:.3g}" for k, v in shown.items())
            print(f"{self.desc} step {step}/{self.total} {numbers} ({rate:.1f} s/step)", flush=True)

    def __enter__(self) -> StepReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
