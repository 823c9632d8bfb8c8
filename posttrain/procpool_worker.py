"""The worker side of `posttrain.procpool`: a plain `python -c` process that runs the calls it is sent.

It never imports the parent's `__main__` (what `multiprocessing`'s spawn does, and what crashes a user's
script that has no `if __name__ == "__main__":` guard): calls arrive pickled with cloudpickle, so a
function or class defined in that script travels by value and everything else by module reference.
Stdlib and cloudpickle only, so a worker starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

PARENT_POLL_S = 0.5


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line, whatever newlines the message holds."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _exit_with_parent(parent: int) -> None:
    """A worker busy in a runaway call never reads its pipe, so it watches for being orphaned instead."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _reply(conn: Connection, reply: tuple[Any, ...]) -> None:
    try:
        payload = cloudpickle.dumps(reply)
    except Exception as exc:
        payload = cloudpickle.dumps((False, f"unpicklable result: {one_line(exc)}", None))
    conn.send_bytes(payload)


def serve(fd: int, parent: int) -> None:
    """Run the initializer, report ready, then answer (fn, args) calls until EOF or None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then closes us
    _exit_with_parent(parent)
    conn = Connection(fd)
    init_error = None
    try:
        initializer = pickle.loads(conn.recv_bytes())
        if initializer is not None:
            initializer()
    except EOFError:
        return
    except BaseException as exc:
        init_error = f"worker initializer failed: {one_line(exc)}"
    conn.send_bytes(cloudpickle.dumps(("ready", init_error)))
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        try:
            message = pickle.loads(data)
            if message is None:
                return
            if init_error is not None:
                _reply(conn, (False, init_error, None))
                continue
            fn, args = message
            reply: tuple[Any, ...] = (True, fn(*args), None)
        except BaseException as exc:  # the worker survives anything the callee raises
            reply = (False, one_line(exc), traceback.format_exc(limit=8))
        _reply(conn, reply)
