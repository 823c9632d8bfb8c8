"""Ray session helpers: start a local Ray or join a cluster, once per process.

Whoever connects owns the shutdown: a fleet created inside an existing session (a test fixture, the RL
loop) leaves that session running when it shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from posttrain.errors import UserError
from posttrain.rollout.config import RayConfig

PLACEMENT_TIMEOUT_S = 120
# Hub access in workers follows the user's setting: the offline variables pass through to every node.
PASSED_THROUGH = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")


def worker_env() -> dict[str, str]:
    """Environment variables for Ray workers: the Hub settings of this process, and no tokenizer threads."""
    passed = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {**passed, "TOKENIZERS_PARALLELISM": "false"}


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
        "runtime_env": {"env_vars": worker_env()},
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


def reserve_bundles(bundle: Mapping[str, float], count: int, strategy: str, what: str, fix: str) -> Any:
    """A ready placement group of `count` copies of `bundle` (one actor each), for `what` ("rollout workers").

    A request larger than the whole cluster fails at once; one the cluster cannot place fails after
    PLACEMENT_TIMEOUT_S. Both are UserErrors whose message ends with `fix`, the keys that size the request."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    total = ray.cluster_resources()
    for resource, amount in bundle.items():
        if total.get(resource, 0) < amount * count:
            raise UserError(
                f"{count} {what} need {amount * count:g} {resource} but the Ray cluster has "
                f"{total.get(resource, 0):g}; lower {fix}"
            )
    placement = placement_group([dict(bundle)] * count, strategy=strategy)
    ready, _ = ray.wait([placement.ready()], timeout=PLACEMENT_TIMEOUT_S)
    if not ready:
        remove_placement_group(placement)
        raise UserError(
            f"could not place {count} {what} of {dict(bundle)} with strategy {strategy} within "
            f"{PLACEMENT_TIMEOUT_S}s; cluster has {ray.cluster_resources()}"
        )
    return placement
