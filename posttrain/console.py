"""Terminal behaviour shared by every command: progress bars on a terminal, quiet in CI and pipes."""

from __future__ import annotations

import os
import sys


def progress_enabled(setting: str = "auto") -> bool:
    if setting != "auto":
        return setting == "on"
    return sys.stderr.isatty() and not os.environ.get("CI")


def quiet_library_progress_bars() -> None:
    """datasets and transformers draw their own bars (tokenizing, loading weights); silence them."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
