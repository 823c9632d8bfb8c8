"""Callees for the ProcessPool tests, in a module light enough that importing it in a worker costs nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def behave(kind: str, pid_file: str | None = None) -> object:
    if pid_file is not None:
        Path(pid_file).write_text(str(os.getpid()))
    if kind == "hang":
        threading.Event().wait()  # never returns: only a kill ends this call
    if kind == "crash":
        os._exit(7)
    if kind == "raise":
        raise ValueError("boom\nsecond line")
    if kind == "unpicklable":
        return threading.Lock()
    return kind.upper()


def failing_initializer() -> None:
    raise RuntimeError("no model here")
