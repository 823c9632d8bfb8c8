"""`run_code`: execute an untrusted program against tests in a fresh sandbox and count the passes.

Each call gets its own process tree under the strongest isolation available (see `isolation.py`), its
own uid where we are root, and a slot in a process-wide bounded pool, so a batch of runs cannot use more
than `max_parallel` sandboxes at once however many threads call in.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from posttrain.rewards.sandbox.interpreter import Interpreter, host_interpreter, unprivileged_interpreter
from posttrain.rewards.sandbox.isolation import isolation_level, launch_command, read_only_paths

STATUSES = ("ok", "fail", "timeout", "memory", "error")
MAX_PROGRAM_CHARS = 1_000_000
_UID_BASE = 200_000  # throwaway uids: never in /etc/passwd, distinct per process and per slot


@dataclass
class CodeResult:
    passed: int
    total: int
    status: str  # one of STATUSES
    seconds: float = field(default=0.0, compare=False)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0


class _Slots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(size):
            self._free.put(slot)

    @contextlib.contextmanager
    def take(self) -> Iterator[int]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)


_SLOTS = _Slots(max(1, os.cpu_count() or 1))


def set_max_parallel(n: int) -> None:
    """Resize the process-wide bound on concurrent sandboxes (call before any run is in flight)."""
    global _SLOTS
    _SLOTS = _Slots(max(1, n))


def _total(tests: str | Sequence[dict[str, Any]]) -> int:
    return 1 if isinstance(tests, str) else max(1, len(tests))


def _job(program: str, tests: Any, level: str, slot: int, timeout_s: float, memory_mb: int, workdir: str) -> dict:
    paths, symlinks = read_only_paths()
    # bwrap maps us to an unprivileged uid itself; otherwise root drops every case to a throwaway uid.
    drop = os.geteuid() == 0 and level != "bwrap"
    interpreter = Interpreter(host_interpreter())
    if drop and level == "rlimits":
        interpreter = unprivileged_interpreter()  # not None: isolation_level refused rlimits otherwise
    return {
        "nonce": secrets.token_hex(16),
        "program": program,
        "tests": tests,
        "python": interpreter.path,
        "env": interpreter.env,
        "workdir": workdir,
        "build_root": level == "unshare",
        "pid_namespace": level != "rlimits",
        "uid": _UID_BASE + (os.getpid() % 100_000) * 64 + slot if drop else None,
        "ro_paths": paths,
        "symlinks": symlinks,
        "timeout_s": timeout_s,
        "memory_mb": memory_mb,
        "tmpfs_mb": 64,
        "file_mb": 16,
        "max_procs": 64,
        "output_cap": 4 * 1024 * 1024,
    }


def run_code(
    program: str,
    tests: str | Sequence[dict[str, Any]],
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    isolation: str = "auto",
) -> CodeResult:
    """Run `program` then `tests` (assert-style Python code, or a list of {"input", "output"} stdin cases).

    `timeout_s` and `memory_mb` apply to each execution. Never raises on bad programs or tests: anything
    wrong comes back as a status (fail, timeout, memory, error) with `passed` counting what did pass.
    """
    start = time.monotonic()
    if not isinstance(program, str) or len(program) > MAX_PROGRAM_CHARS:
        return CodeResult(0, _total(tests) if isinstance(tests, str | list) else 1, "error")
    if not isinstance(tests, str):
        tests = [{"input": str(c.get("input", "")), "output": str(c.get("output", ""))} for c in tests]
        if not tests:
            return CodeResult(0, 0, "error")
    program = program.replace("\x00", "")
    level = isolation_level(isolation)
    with _SLOTS.take() as slot:
        host_dir = tempfile.mkdtemp(prefix="posttrain-sandbox-") if level == "rlimits" else None
        try:
            workdir = os.path.join(host_dir, "work") if host_dir else "/tmp/work"
            job = _job(program, tests, level, slot, timeout_s, memory_mb, workdir)
            if host_dir and job["uid"] is not None:
                os.chmod(host_dir, 0o755)
            result = _launch(level, job, deadline_s=(timeout_s + 1.5) * _total(tests) + 15)
        finally:
            if host_dir:
                shutil.rmtree(host_dir, ignore_errors=True)
    result.seconds = time.monotonic() - start
    return result


def _launch(level: str, job: dict, deadline_s: float) -> CodeResult:
    total = _total(job["tests"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        launch_command(level, job["tmpfs_mb"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(json.dumps(job).encode(), timeout=deadline_s)
        proc.wait(timeout=10)  # the namespace's init exits only once every process inside it is gone
    except subprocess.TimeoutExpired:
        return CodeResult(0, total, "timeout")
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        verdict = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return CodeResult(0, total, "error")
    if verdict.get("nonce") != job["nonce"] or verdict.get("status") not in STATUSES:
        return CodeResult(0, total, "error")
    return CodeResult(int(verdict["passed"]), int(verdict["total"]), verdict["status"])


def run_code_many(
    jobs: Sequence[tuple[str, str | Sequence[dict[str, Any]]]], *, max_workers: int | None = None, **options: Any
) -> list[CodeResult]:
    """Run (program, tests) pairs concurrently, bounded by the process-wide sandbox slots."""
    workers = max_workers or _SLOTS.size
    with ThreadPoolExecutor(max_workers=workers) as executor:
        return list(executor.map(lambda job: run_code(job[0], job[1], **options), jobs))
