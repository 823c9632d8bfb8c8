"""Ray session helpers: start a local Ray or join a cluster, once per process.

Whoever connects owns the shutdown: a fleet created inside an existing session (a test fixture, the RL
loop) leaves that session running when it shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from posttrain.rollout.config import RayConfig

# Workers run without hub access, like the CLI process itself.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def init_ray(cfg: RayConfig) -> bool:
    """Connect to Ray as `cfg` says unless already connected; True when this call connected."""
    import ray

    if ray.is_initialized():
        return False
    # Ray announces its (secure) default of token authentication on every local start; keep the CLI quiet.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    kwargs: dict = {
        "include_dashboard": False,
        "namespace": cfg.namespace,
        "runtime_env": {"env_vars": WORKER_ENV},
        "logging_level": logging.WARNING,
    }
    if cfg.address is None:
        kwargs.update(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
        # Ray starts its workers at nice 15; a rollout worker (or any compute actor) then gets a fraction of a
        # busy CPU next to the driver: measured 2x slower wall time at equal CPU time on a loaded machine.
        os.environ.setdefault("RAY_worker_niceness", "0")
    else:
        kwargs["address"] = cfg.address
    context = ray.init(**kwargs)
    if cfg.address is None:  # this process owns the local Ray: no process of it may outlive us, even after SIGKILL
        from posttrain.rollout.reaper import start_reaper

        start_reaper(context.address_info["session_dir"])
    return True


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Ray for the duration of a block; shut down afterwards only if this block started it."""
    owned = init_ray(cfg)
    try:
        yield
    finally:
        if owned:
            shutdown_ray()
