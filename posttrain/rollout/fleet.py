"""The rollout fleet: Ray actors that hold the policy, generate in batches, take new weights, survive failures.

API for the learner (see docs/rollout.md), shared with the in-process `LocalFleet` through `Fleet`:

    fleet = RolloutFleet("zaya-tiny", rollout_cfg, ray_cfg)
    rollouts = fleet.generate([Request(id="q0.s0", messages=[...], group=0, params=SamplingParams(...), seed=1)])
    fleet.sync_weights(model.state_dict(), version=step)
    trees = fleet.run_rsa(["What is 2+3?"], rsa_cfg)
    fleet.shutdown()

Work is cut into chunks of `rollout.batch_size` requests and each idle worker pulls the next chunk. A
chunk is the unit of loss: when its worker dies, a new worker takes the slot (same placement bundle),
loads the current weights, and the whole chunk is resubmitted, so no sample is lost or duplicated.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from posttrain.models import check_model_path, load_tokenizer
from posttrain.rollout.backend import Fleet
from posttrain.rollout.config import RayConfig, RolloutConfig
from posttrain.rollout.session import init_ray, reserve_bundles, shutdown_ray
from posttrain.rollout.types import Request, Rollout, TokenScores
from posttrain.rollout.weight_sync import WEIGHT_SYNC, CollectiveSync, Manifest
from posttrain.rollout.worker import RolloutWorker

DispatchHook = Callable[[int, Sequence[Request]], None]


class RolloutFleet(Fleet):
    """`rollout.num_workers` Ray actors, each holding one engine."""

    def __init__(
        self,
        model_path: str,
        rollout: RolloutConfig,
        ray_cfg: RayConfig | None = None,
        *,
        seed: int = 0,
        dtype: str = "float32",
        device: str = "auto",
    ) -> None:
        import ray

        check_model_path(model_path)
        self.model_path, self.cfg, self.seed, self.dtype, self.device = model_path, rollout, seed, dtype, device
        self.tokenizer = load_tokenizer(model_path)
        self.version = 0
        self.restarts = 0
        self._weights: Any = None  # payload of the latest sync, replayed into restarted workers
        self._unsynced: set[int] = set()  # collective sync: replacements that wait for the next sync
        self._owns_ray = init_ray(ray_cfg or RayConfig())
        try:
            self._sync = WEIGHT_SYNC[rollout.weight_sync](gpus=rollout.gpus_per_worker > 0)
            bundle = {"CPU": rollout.cpus_per_worker, **rollout.resources_per_worker}
            if rollout.gpus_per_worker:
                bundle["GPU"] = rollout.gpus_per_worker
            strategy = (ray_cfg or RayConfig()).placement_strategy
            fix = "rollout.num_workers or the per-worker resources"
            self._placement = reserve_bundles(bundle, rollout.num_workers, strategy, "rollout workers", fix)
            self._actor = ray.remote(RolloutWorker)
            self._incarnation = Counter()
            self._loading: dict[int, Any] = {}  # slot -> a replacement's pending weight load
            self.workers = [self._spawn(slot) for slot in range(rollout.num_workers)]
            ray.get([w.info.remote() for w in self.workers])  # surface load errors here, not mid-generate
        except BaseException:
            self.shutdown()
            raise

    def _spawn(self, slot: int) -> Any:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._incarnation[slot] += 1
        worker = self._actor.options(
            num_cpus=self.cfg.cpus_per_worker,
            num_gpus=self.cfg.gpus_per_worker,
            resources=dict(self.cfg.resources_per_worker),
            scheduling_strategy=PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=slot),
            max_restarts=0,  # restarts are ours: a new worker must be re-synced before it takes work
        ).remote(
            f"w{slot}.{self._incarnation[slot] - 1}",
            self.model_path,
            engine=self.cfg.engine,
            seed=self.seed,
            dtype=self.dtype,
            device=self.device,
            num_threads=max(1, int(self.cfg.cpus_per_worker)),
        )
        if self._weights is not None:  # actor tasks run in submission order: the load comes before any work
            self._loading[slot] = worker.load_weights.remote(self._weights, self.version)
        elif isinstance(self._sync, CollectiveSync) and self._sync.generation > 0:
            self._unsynced.add(slot)  # no copy of the synced weights is kept: no work until the next sync
        return worker

    def _replace(self, slot: int) -> None:
        import ray

        ray.kill(self.workers[slot], no_restart=True)
        self.workers[slot] = self._spawn(slot)
        self.restarts += 1

    def generate(self, requests: Sequence[Request], on_dispatch: DispatchHook | None = None) -> list[Rollout]:
        """One rollout per request, in request order. `on_dispatch(slot, chunk)` runs after each submission."""
        import ray

        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("request ids must be unique within one generate() call")
        size = self.cfg.batch_size
        pending = deque(list(requests[i : i + size]) for i in range(0, len(requests), size))
        in_flight: dict[Any, tuple[int, list[Request]]] = {}
        deaths: Counter[int] = Counter()
        results: dict[str, Rollout] = {}

        def submit(slot: int) -> None:
            chunk = pending.popleft()
            in_flight[self.workers[slot].generate.remote(chunk)] = (slot, chunk)
            if on_dispatch is not None:
                on_dispatch(slot, chunk)

        def idle_slots() -> list[int]:
            busy = {slot for slot, _ in in_flight.values()}
            return [slot for slot in range(len(self.workers)) if slot not in busy and slot not in self._unsynced]

        for slot in idle_slots():
            if pending:
                submit(slot)
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            slot, chunk = in_flight.pop(ref)
            try:
                rollouts = ray.get(ref)
            except ray.exceptions.RayActorError:
                deaths[slot] += 1
                if deaths[slot] > self.cfg.max_worker_restarts:
                    raise RuntimeError(
                        f"rollout worker slot {slot} died {deaths[slot]} times in one generate() call"
                    ) from None
                self._replace(slot)
                pending.appendleft(chunk)
                for free in idle_slots()[:1]:  # the replacement itself, unless it waits for weights
                    submit(free)
                if not in_flight:
                    raise RuntimeError(
                        "every rollout worker that holds the current weights died; with rollout.weight_sync="
                        "collective a replacement receives weights at the next sync"
                    ) from None
                continue
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            for rollout in rollouts:
                if rollout.request_id in results:
                    raise RuntimeError(f"request {rollout.request_id!r} came back twice")
                results[rollout.request_id] = rollout
            if pending:
                submit(slot)
        return [results[i] for i in ids]

    def sync_weights(
        self, state_dict: Mapping[str, torch.Tensor], version: int, on_submit: Callable[[int], None] | None = None
    ) -> None:
        """Publish new weights once and wait until every worker, replacements included, serves `version`.

        A worker that dies while loading is replaced and the replacement's load is awaited too; a slot that dies
        more than `rollout.max_worker_restarts` times in one sync fails it. `on_submit(slot)` runs after each
        worker's load is submitted (tests kill workers there)."""
        import ray

        if isinstance(self._sync, CollectiveSync):
            self._sync_collective(state_dict, version, on_submit)
            return
        self._weights, self.version = self._sync.publish(state_dict), version
        deaths: Counter[int] = Counter()
        for slot, worker in enumerate(self.workers):
            self._loading[slot] = worker.load_weights.remote(self._weights, version)
            if on_submit is not None:
                on_submit(slot)
        while self._loading:
            slot, ref = self._loading.popitem()
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                deaths[slot] += 1
                if deaths[slot] > self.cfg.max_worker_restarts:
                    raise RuntimeError(
                        f"rollout worker slot {slot} died {deaths[slot]} times loading weights"
                    ) from None
                self._replace(slot)  # queues the replacement's load in self._loading

    def _sync_collective(
        self, state_dict: Mapping[str, torch.Tensor], version: int, on_submit: Callable[[int], None] | None
    ) -> None:
        """Broadcast to every worker; when workers die (before joining, mid-broadcast or while loading), replace
        them and broadcast again to a new generation of the group."""
        import ray

        manifest = Manifest.of(state_dict)
        deaths: Counter[int] = Counter()
        while True:
            spec = self._sync.spec(tuple(self._incarnation[slot] for slot in range(len(self.workers))))
            refs = {}
            for slot, worker in enumerate(self.workers):
                refs[slot] = worker.receive_weights.remote(spec, slot + 1, manifest, version)
                if on_submit is not None:
                    on_submit(slot)
            waiting = list(refs.values())
            failure: Exception | None = None
            try:  # a receive that returns before the broadcast has failed: call the rendezvous off
                self._sync.send(state_dict, manifest, alive=lambda refs=waiting: not ray.wait(refs, timeout=0)[0])
            except RuntimeError as exc:
                failure = exc
            dead, errors = [], []
            for slot, ref in refs.items():
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    dead.append(slot)
                except ray.exceptions.RayTaskError as exc:
                    errors.append(exc)
            if not dead:
                if errors:
                    raise errors[0].as_instanceof_cause() from None
                if failure is not None:
                    raise failure
                break
            for slot in dead:
                deaths[slot] += 1
                if deaths[slot] > self.cfg.max_worker_restarts:
                    raise RuntimeError(f"rollout worker slot {slot} died {deaths[slot]} times receiving weights")
                self._replace(slot)
        self.version = version
        self._unsynced.clear()

    def max_context_seen(self, reset: bool = False) -> int:
        """Longest sequence any live worker's engine held since the last reset (a new worker starts at 0)."""
        import ray

        return max(ray.get([w.max_context_seen.remote(reset) for w in self.workers]))

    def info(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([w.info.remote() for w in self.workers])

    def shutdown(self) -> None:
        """Stop the workers and free their placement; stop Ray only if this fleet started it."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if ray.is_initialized():
            for worker in getattr(self, "workers", []):
                ray.kill(worker, no_restart=True)
            self.workers = []
            if getattr(self, "_placement", None) is not None:
                remove_placement_group(self._placement)
                self._placement = None
        if self._owns_ray:
            shutdown_ray()
            self._owns_ray = False

    def score(
        self, sequences: Sequence[Sequence[int]], *, temperature: float = 1.0, top_logprobs: int = 0
    ) -> list[TokenScores]:
        """Teacher-forced log-probs (see `Engine.score`), the sequences split evenly over the workers.

        Unlike `generate`, a worker that dies here is not replaced: the call raises.
        """
        import ray

        workers = [w for slot, w in enumerate(self.workers) if slot not in self._unsynced]
        share = -(-len(sequences) // len(workers)) if sequences else 1
        parts = [list(sequences[i : i + share]) for i in range(0, len(sequences), share)]
        refs = [
            worker.score.remote(part, temperature=temperature, top_logprobs=top_logprobs)
            for worker, part in zip(workers, parts, strict=False)
        ]
        try:
            return [scores for part in ray.get(refs) for scores in part]
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def __enter__(self) -> RolloutFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
