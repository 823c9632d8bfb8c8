"""A process pool whose per-call timeouts are enforced by killing the worker.

Environment generators, verifiers and math graders run untrusted or runaway code (rlve-gym's generators
can loop forever; math-verify's `signal.alarm` timeouts do not work off the main thread or inside Ray
actors). Threads cannot be stopped and `concurrent.futures` cannot cancel a running call, so each call
here runs in a long-lived worker process; a call that overruns its deadline gets the worker SIGKILLed
and replaced, and comes back as a failed `CallResult`, never as an exception in the caller.

Workers are fresh `python -c` processes (`posttrain.procpool_worker`) that talk over a socket pair. Unlike
`multiprocessing`'s spawn they never re-import the caller's `__main__`, so pools work the same from a
script without a `__main__` guard, `python -c`, a notebook, a thread or a Ray worker; callables defined in
`__main__` are shipped by value (cloudpickle). A call's deadline starts once its worker is up, so worker
start-up never eats into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import wait
from typing import Any

import cloudpickle

from posttrain.procpool_worker import one_line

_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from posttrain.procpool_worker import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)


@dataclass
class CallResult:
    ok: bool
    value: Any = None
    error: str | None = None  # one line
    seconds: float = 0.0
    traceback: str | None = None  # the callee's, when it raised


class _Worker:
    def __init__(self, initializer: Callable[[], None] | None) -> None:
        self.conn, child = Pipe()
        fd = child.fileno()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, json.dumps(sys.path), str(fd), str(os.getpid())],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        self.started = time.monotonic()
        self.ready = False
        with contextlib.suppress(OSError):  # a worker that died at once is reported by finish_start
            self.conn.send_bytes(cloudpickle.dumps(initializer))

    def finish_start(self) -> None:
        """Read the worker's ready message; a worker that died before sending it is a setup failure."""
        try:
            self.conn.recv_bytes()
        except (EOFError, OSError):
            code = self.process.wait(timeout=10)
            message = f"a pool worker exited with code {code} before it was ready (its stderr is above)"
            raise RuntimeError(message) from None
        self.ready = True

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.conn.close()


class ProcessPool:
    """`map` preserves order; every item yields exactly one `CallResult`, whatever the callee does.

    `fn`, its arguments and `initializer` must be picklable by cloudpickle (module-level functions, or
    anything defined in `__main__`). `initializer` runs once per worker, replacements included, before
    the worker takes calls and outside any call's timeout; if it raises, every call on that worker fails
    with its error. A call's timeout does cover unpickling it, which imports `fn`'s module on first use:
    import heavy modules in `initializer`. Safe to share between threads (calls are serialized).
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        timeout_s: float = 10.0,
        initializer: Callable[[], None] | None = None,
        start_timeout_s: float = 300.0,
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.kills = 0
        self._initializer = initializer
        self._lock = threading.Lock()
        self._owner = os.getpid()  # a forked child inherits the pipes, never the workers
        self._workers = [_Worker(initializer) for _ in range(num_workers)]

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> CallResult:
        return self.map(fn, [args], timeout_s=timeout_s)[0]

    def map(
        self, fn: Callable[..., Any], items: Sequence[tuple], *, timeout_s: float | None = None
    ) -> list[CallResult]:
        limit = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if not self._workers or os.getpid() != self._owner:
                raise RuntimeError("this ProcessPool is closed or belongs to the parent of this forked process")
            return self._run(fn, items, limit)

    def _run(self, fn: Callable[..., Any], items: Sequence[tuple], limit: float) -> list[CallResult]:
        results: list[CallResult | None] = [None] * len(items)
        pending = deque(range(len(items)))
        busy: dict[int, tuple[int, float]] = {}  # worker slot -> (item index, start time)
        while pending or busy:
            self._dispatch(fn, items, pending, busy, results)
            if not (pending or busy):
                break
            starting = [w for w in self._workers if not w.ready]
            deadlines = [start + limit for _, start in busy.values()]
            deadlines += [w.started + self.start_timeout_s for w in starting]
            watched = [self._workers[s].conn for s in busy] + [w.conn for w in starting]
            ready = wait(watched, timeout=max(0.0, min(deadlines) - time.monotonic()))
            for worker in starting:
                if worker.conn in ready:
                    worker.finish_start()
                elif time.monotonic() > worker.started + self.start_timeout_s:
                    raise RuntimeError(f"a pool worker did not start within {self.start_timeout_s:g}s")
            for slot in list(busy):
                index, start = busy[slot]
                worker = self._workers[slot]
                elapsed = time.monotonic() - start
                if worker.conn in ready:
                    results[index] = self._receive(slot, elapsed)
                    del busy[slot]
                elif elapsed >= limit:
                    results[index] = CallResult(False, error=f"timeout after {limit:g}s", seconds=elapsed)
                    self._replace(slot)
                    del busy[slot]
        return [r for r in results if r is not None]

    def _dispatch(
        self,
        fn: Callable[..., Any],
        items: Sequence[tuple],
        pending: deque[int],
        busy: dict[int, tuple[int, float]],
        results: list[CallResult | None],
    ) -> None:
        for slot in range(len(self._workers)):
            while pending and slot not in busy and self._workers[slot].ready:
                index = pending.popleft()
                try:
                    payload = cloudpickle.dumps((fn, tuple(items[index])))
                except Exception as exc:
                    results[index] = CallResult(False, error=f"cannot send the call: {one_line(exc)}")
                    continue
                try:
                    self._workers[slot].conn.send_bytes(payload)
                except OSError:  # died while idle: the call never started, so it is a crash, not a timeout
                    results[index] = CallResult(False, error=self._crashed(slot))
                    continue
                busy[slot] = (index, time.monotonic())

    def _receive(self, slot: int, elapsed: float) -> CallResult:
        try:
            data = self._workers[slot].conn.recv_bytes()
        except (EOFError, OSError):
            return CallResult(False, error=self._crashed(slot), seconds=elapsed)
        try:
            ok, payload, trace = cloudpickle.loads(data)
        except Exception as exc:  # e.g. a result whose class this process cannot import
            return CallResult(False, error=f"cannot read the result: {one_line(exc)}", seconds=elapsed)
        if ok:
            return CallResult(True, payload, seconds=elapsed)
        return CallResult(False, error=payload, seconds=elapsed, traceback=trace)

    def _crashed(self, slot: int) -> str:
        process = self._workers[slot].process
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        message = f"worker crashed (exit code {process.returncode})"
        self._replace(slot)
        return message

    def _replace(self, slot: int) -> None:
        self.kills += 1
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._initializer)

    def close(self) -> None:
        with self._lock:
            if os.getpid() != self._owner:  # the parent's workers: leave them to the parent
                self._workers = []
                return
            for worker in self._workers:
                with contextlib.suppress(OSError):
                    worker.conn.send_bytes(cloudpickle.dumps(None))
            for worker in self._workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=2)
                worker.kill()
            self._workers = []

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
