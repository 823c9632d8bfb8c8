"""Reap a local Ray session's processes once the process that started it is gone, even after SIGKILL.

Ray's dashboard and runtime-env agents outlive a driver killed with SIGKILL: they are orphaned, ignore SIGTERM
and pile up with every crash and resume. `init_ray` starts this watcher, in its own session, beside every local
Ray it starts. It polls the driver; when the driver is gone it SIGKILLs every process of that Ray session (they
name the session directory on their command lines) and exits. It also exits once the session's processes are
gone on their own (a clean `ray.shutdown()`).

    python -m posttrain.rollout.reaper <driver pid> <driver start time> <session dir>
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 1.0


def session_processes(session: str) -> list[psutil.Process]:
    """Processes whose command line names the Ray session (its directory's name), this watcher excepted."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid != os.getpid() and any(session in part for part in cmdline):
            found.append(process)
    return found


def _alive(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1e-3 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watch(pid: int, started: float, session_dir: str) -> None:
    session = Path(session_dir).name
    while _alive(pid, started):
        time.sleep(POLL_S)
        if not session_processes(session):
            return  # shut down cleanly; nothing left to reap
    for _ in range(3):  # a dying raylet may still spawn: sweep a few times
        for process in session_processes(session):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        time.sleep(POLL_S)


def start_reaper(session_dir: str) -> None:
    """Watch this process and reap `session_dir`'s processes when it dies."""
    me = psutil.Process()
    subprocess.Popen(
        [sys.executable, "-m", "posttrain.rollout.reaper", str(me.pid), repr(me.create_time()), session_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a SIGKILL of the driver's process group must not take the watcher along
        close_fds=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3])
