"""Start the server: bind first (a taken port fails before the model loads), load the runner, run uvicorn.

SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight requests finish within
`serve.drain_timeout_s`, stops the batcher, shuts the Ray workers down, and exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

from posttrain.errors import UserError

BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """A bound socket; port 0 takes a free one, which `sock.getsockname()` then names."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"serve.host={host!r}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def build_runner(cfg: Any) -> Any:
    """The generate/score backend: one in-process worker, or a fleet of `serve.num_workers` Ray workers."""
    from dataclasses import replace

    if cfg.serve.num_workers == 1:
        from posttrain.rollout.worker import RolloutWorker

        return RolloutWorker(
            "serve", cfg.model.path, engine=cfg.rollout.engine, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device
        )
    from posttrain.rollout.fleet import RolloutFleet

    rollout = replace(cfg.rollout, num_workers=cfg.serve.num_workers)
    return RolloutFleet(cfg.model.path, rollout, cfg.ray, seed=cfg.seed, dtype=cfg.model.dtype, device=cfg.device)


@contextlib.contextmanager
def _quiet_after_drain() -> Iterator[None]:
    """uvicorn re-raises the signal that stopped it once it has drained; by then there is nothing left to stop."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(app: Any, sock: socket.socket, *, announce: str, drain_timeout_s: float) -> None:
    """Listen, print `announce` (clients may connect from then on), and serve until a signal drains it."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=drain_timeout_s, backlog=BACKLOG
    )
    sock.listen(BACKLOG)
    print(announce, flush=True)
    with _quiet_after_drain():
        uvicorn.Server(config).run(sockets=[sock])
