"""What the RL loop, `posttrain rsa` and the probes need from a rollout fleet, and the in-process fleet.

`Fleet` is the small interface: `generate(requests)`, `sync_weights(state, version)`, `run_rsa(...)` and the
tokenizer. `RolloutFleet` (fleet.py) implements it with Ray actors; `LocalFleet` runs one engine in this
process (`rollout.backend=local`): no Ray start-up, the same rollouts, for laptops, tests and probes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from posttrain.rollout.config import RayConfig, RolloutConfig, RSAConfig
from posttrain.rollout.markovian_rsa import GenerateFn, RSATree, run_markovian_rsa
from posttrain.rollout.types import Request, Rollout, SamplingParams


class Fleet(ABC):
    cfg: RolloutConfig
    seed: int
    tokenizer: Any
    version: int

    @abstractmethod
    def generate(self, requests: Sequence[Request]) -> list[Rollout]:
        """One rollout per request, in request order."""

    @abstractmethod
    def sync_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        """Serve these weights, stamped `version`, before the next generate returns anything."""

    @abstractmethod
    def shutdown(self) -> None:
        """Free workers and their resources."""

    def sampling_params(self, **changes: Any) -> SamplingParams:
        """The config's sampling settings, with `changes` applied."""
        cfg = self.cfg
        params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.top_k, tuple(cfg.stop))
        return SamplingParams(**{**params.__dict__, **changes})

    def run_rsa(
        self,
        problems: Sequence[str],
        rsa: RSAConfig,
        *,
        seed: int | None = None,
        on_round: Callable[[int], None] | None = None,
        candidates: GenerateFn | None = None,
    ) -> list[RSATree]:
        """Markovian RSA over `problems`; each round is one `generate` call over all problems' chains."""
        return run_markovian_rsa(
            problems,
            self.generate,
            self.tokenizer,
            rsa,
            self.sampling_params(),
            seed=self.seed if seed is None else seed,
            on_round=on_round,
            candidates=candidates,
        )

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class LocalFleet(Fleet):
    """One engine in this process, fed `rollout.batch_size` requests at a time."""

    def __init__(
        self, model_path: str, rollout: RolloutConfig, *, seed: int = 0, dtype: str = "float32", device: str = "auto"
    ) -> None:
        from posttrain.rollout.worker import RolloutWorker

        self.cfg, self.seed, self.version = rollout, seed, 0
        self.worker = RolloutWorker("local", model_path, engine=rollout.engine, seed=seed, dtype=dtype, device=device)
        self.tokenizer = self.worker.engine.tokenizer

    def generate(self, requests: Sequence[Request]) -> list[Rollout]:
        size = self.cfg.batch_size
        return [r for i in range(0, len(requests), size) for r in self.worker.generate(requests[i : i + size])]

    def sync_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> None:
        self.version = self.worker.load_weights(state_dict, version)

    def max_context_seen(self, reset: bool = False) -> int:
        return self.worker.max_context_seen(reset)

    def shutdown(self) -> None:
        """Nothing to free: the engine lives and dies with this process."""


def make_fleet(
    model_path: str,
    rollout: RolloutConfig,
    ray_cfg: RayConfig | None = None,
    *,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "auto",
) -> Fleet:
    """The fleet `rollout.backend` names: `ray` (actors, any cluster) or `local` (this process)."""
    if rollout.backend == "local":
        return LocalFleet(model_path, rollout, seed=seed, dtype=dtype, device=device)
    from posttrain.rollout.fleet import RolloutFleet

    return RolloutFleet(model_path, rollout, ray_cfg, seed=seed, dtype=dtype, device=device)
