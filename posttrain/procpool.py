"""A process pool whose per-call timeouts are enforced by killing the worker.

Environment generators, verifiers and math graders run untrusted or runaway code (rlve-gym's generators
can loop forever; math-verify's `signal.alarm` timeouts do not work off the main thread or inside Ray
actors). Threads cannot be stopped and `concurrent.futures` cannot cancel a running call, so each call
here runs in a long-lived worker process; a call that overruns its deadline gets the worker SIGKILLed
and replaced, and comes back as a failed `CallResult`, never as an exception in the caller.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass
class CallResult:
    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def _worker_main(conn: Connection, initializer: Callable[[], None] | None) -> None:
    if initializer is not None:
        initializer()
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = (True, fn(*args))
        except BaseException as exc:  # the worker survives anything the callee raises
            reply = (False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        try:
            conn.send(reply)
        except Exception as exc:  # unpicklable return value
            conn.send((False, f"unpicklable result: {exc}"))


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, initializer: Callable[[], None] | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, initializer), daemon=True)
        self.process.start()
        child.close()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class ProcessPool:
    """`map` preserves order; every item yields exactly one `CallResult`, whatever the callee does.

    `fn` must be picklable (a module-level function). Workers start with the `spawn` method so that a
    parent holding threads (torch, Ray) is never forked.
    """

    def __init__(
        self,
        num_workers: int = 2,
        *,
        timeout_s: float = 10.0,
        initializer: Callable[[], None] | None = None,
        start_method: str = "spawn",
    ) -> None:
        if num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.timeout_s = timeout_s
        self.kills = 0
        self._initializer = initializer
        self._ctx = mp.get_context(start_method)
        self._workers = [_Worker(self._ctx, initializer) for _ in range(num_workers)]

    def call(self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> CallResult:
        return self.map(fn, [args], timeout_s=timeout_s)[0]

    def map(
        self, fn: Callable[..., Any], items: Sequence[tuple], *, timeout_s: float | None = None
    ) -> list[CallResult]:
        limit = self.timeout_s if timeout_s is None else timeout_s
        results: list[CallResult | None] = [None] * len(items)
        pending = list(range(len(items)))[::-1]
        busy: dict[int, tuple[int, float]] = {}  # worker slot -> (item index, start time)
        while pending or busy:
            for slot in range(len(self._workers)):
                if slot not in busy and pending:
                    index = pending.pop()
                    self._workers[slot].conn.send((fn, items[index]))
                    busy[slot] = (index, time.monotonic())
            now = time.monotonic()
            nearest = min(start + limit for _, start in busy.values())
            ready = wait([self._workers[s].conn for s in busy], timeout=max(0.0, nearest - now))
            for slot in list(busy):
                index, start = busy[slot]
                worker = self._workers[slot]
                elapsed = time.monotonic() - start
                if worker.conn in ready:
                    try:
                        ok, payload = worker.conn.recv()
                        results[index] = CallResult(ok, payload if ok else None, None if ok else payload, elapsed)
                    except (EOFError, OSError):
                        worker.process.join(timeout=1)
                        code = worker.process.exitcode
                        results[index] = CallResult(False, error=f"worker crashed (exit code {code})", seconds=elapsed)
                        self._replace(slot)
                    del busy[slot]
                elif elapsed >= limit:
                    results[index] = CallResult(False, error=f"timeout after {limit:g}s", seconds=elapsed)
                    self._replace(slot)
                    del busy[slot]
        return [r for r in results if r is not None]

    def _replace(self, slot: int) -> None:
        self.kills += 1
        self._workers[slot].kill()
        self._workers[slot] = _Worker(self._ctx, self._initializer)

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.process.join(timeout=2)
            worker.kill()
        self._workers = []

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
