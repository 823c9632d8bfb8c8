"""Data-parallel learner: `rl.learner_workers` Learner replicas in Ray actors, one torch.distributed group.

Every replica holds the whole model and optimizer and receives the whole rollout batch. All replicas shuffle
and split it identically (the shuffle is seeded by seed, step and epoch), and each computes gradients for its
contiguous share of every minibatch with the loss denominators of the *whole* minibatch, so the sum of the
replicas' gradients (one all-reduce) is the single-process gradient and every replica takes the same optimizer
step. Also summed over replicas: the ZAYA router-balancing counts (the bias update sees the global expert
load) and the metric sums; anchor and reference log-probs, when they are needed, are computed a share per
replica and all-gathered.

Rank 0 owns the checkpoint state: `state_dict()` is its optimizer state, which every replica holds too, so a
checkpoint does not depend on the worker count and resumes into any other count (or into a plain Learner).
The driver keeps a mirror of the weights for what runs in its own process (weight sync to the fleet,
`save_pretrained`, export); it is refreshed from rank 0 when read after an update. gloo on CPU; NCCL (RCCL on
ROCm builds of torch) when the replicas have GPUs. A replica that dies fails the step: resume from the last
checkpoint (there is no elastic recovery).

`rl.learner_sharding=fsdp2` (ShardedReplicaLearner) shards every decoder layer over the replicas with torch's
FSDP2 (`fully_shard`): a replica keeps 1/N of those layers' weights, gradients and AdamW moments, all-gathers
a layer for its forward and backward, and reduce-scatters (sums) its gradient. Checkpoints and the driver's
mirror hold whole tensors, gathered from the shards, so they stay independent of the worker count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor
from transformers import PreTrainedModel

from posttrain.rl.batch import TrainBatch
from posttrain.rl.learner import Learner
from posttrain.rl.optim import build_optimizers, build_schedulers, states_fit
from posttrain.rollout.config import RayConfig
from posttrain.rollout.session import init_ray, reserve_bundles, shutdown_ray
from posttrain.rollout.weight_sync import bucket_indices

LearnerBuilder = Callable[..., Learner]  # build(learner_cls=...) -> a Learner of that class


def share(size: int, parts: int, index: int) -> tuple[int, int]:
    """[start, stop) of part `index` when `size` rows are cut into `parts` contiguous, near-equal parts (the
    first ones may be empty when size < parts)."""
    return round(index * size / parts), round((index + 1) * size / parts)


class ReplicaLearner(Learner):
    """A Learner whose data-parallel seams go through the default torch.distributed process group."""

    def _share(self, size: int, rank: int | None = None) -> tuple[int, int]:
        return share(size, dist.get_world_size(), dist.get_rank() if rank is None else rank)

    def local_part(self, minibatch: TrainBatch) -> TrainBatch:
        start, stop = self._share(minibatch.size)
        return minibatch.select(range(start, stop))

    @torch.no_grad()
    def batch_logprobs(self, model: PreTrainedModel, batch: TrainBatch) -> torch.Tensor:
        world = dist.get_world_size()
        start, stop = self._share(batch.size)
        width = batch.input_ids.shape[1]
        padded = torch.zeros(-(-batch.size // world), width, device=self.device)
        if stop > start:
            padded[: stop - start] = super().batch_logprobs(model, batch.select(range(start, stop)))
        gathered = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(gathered, padded)
        rows = [part[: b - a] for rank, part in enumerate(gathered) for a, b in [self._share(batch.size, rank)]]
        return torch.cat(rows)

    @torch.no_grad()
    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        # A parameter no replica touched keeps grad None (the optimizer skips it, exactly as in one process); one
        # that some replica touched gets zeros elsewhere, so every replica holds the same sum.
        touched = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(touched, op=dist.ReduceOp.MAX)
        grads = []
        for param, flag in zip(params, touched.tolist(), strict=True):
            if flag and param.grad is None:
                param.grad = torch.zeros_like(param)
            if flag:
                grads.append(param.grad)
        for indices in bucket_indices([(g.numel() * g.element_size(), g.dtype) for g in grads]):
            run = [grads[i] for i in indices]
            flat = torch.cat([g.reshape(-1) for g in run])
            dist.all_reduce(flat)
            for grad, summed in zip(run, flat.split([g.numel() for g in run]), strict=True):
                grad.copy_(summed.view_as(grad))

    def sum_across_replicas(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor)
        return tensor

    def combine_replica_metrics(
        self, sums: dict[str, float], losses: list[float]
    ) -> tuple[dict[str, float], list[float]]:
        # An object gather: a replica whose share of every minibatch was empty has no metric keys at all.
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (dict(sums), list(losses)))
        total: dict[str, float] = {}
        for part_sums, _ in parts:
            for key, value in part_sums.items():
                total[key] = total.get(key, 0.0) + value
        return total, [sum(values) for values in zip(*(part_losses for _, part_losses in parts), strict=True)]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks FSDP2 shards one by one: the classes a HF model names in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layer class (_no_split_modules) to shard")
    return layers


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded tensor gathered whole (a collective: every replica calls it in the same order), else itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


class ShardedReplicaLearner(ReplicaLearner):
    """A ReplicaLearner whose decoder layers are sharded over the group with FSDP2 after it joins (`shard`).

    Every forward of a sharded layer is a collective, so all replicas run the same passes: one plain [B, L]
    forward per micro-batch (no packed buckets, whose count depends on the rows), and a zero-loss pass of one
    row where a replica's share has fewer micro-batches than the busiest replica's. Embeddings, the LM head and
    the final norm stay whole on every replica and are summed as in ReplicaLearner."""

    packs_forwards = False

    def shard(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (dist.get_world_size(),))
        for layer in decoder_layers(self.model):
            fully_shard(layer, mesh=mesh)
        # the optimizers must hold the sharded parameters, which replaced the modules' own
        self.optimizers = build_optimizers(self.model, self.cfg)
        self.schedulers = build_schedulers(self.optimizers, self.cfg, self.total_steps)

    @torch.no_grad()
    def batch_logprobs(self, model: PreTrainedModel, batch: TrainBatch) -> torch.Tensor:
        start, stop = self._share(batch.size)
        if stop == start and model is self.model:  # run the all-gathers the other replicas run
            Learner.batch_logprobs(self, model, batch.select([0]))
        return super().batch_logprobs(model, batch)

    def idle_passes(self, minibatch: TrainBatch, micro_batches: int) -> int:
        world = dist.get_world_size()
        shares = [share(minibatch.size, world, rank) for rank in range(world)]
        return max(min(self.cfg.grad_accum, stop - start) for start, stop in shares) - micro_batches

    @torch.no_grad()
    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        super().sum_gradients([p for p in params if not isinstance(p, DTensor)])
        sharded = [p for p in params if isinstance(p, DTensor) and p.grad is not None]
        # FSDP2's reduce-scatter averages over the replicas (a plain sum needs PREMUL_SUM, which gloo lacks); the
        # loss denominators are the whole minibatch's, so the sum is the one-process gradient
        torch._foreach_mul_([p.grad.to_local() for p in sharded], float(dist.get_world_size()))

    @torch.no_grad()
    def clip_gradients(self, params: list[nn.Parameter], limit: float) -> float:
        grads = [p.grad for p in params if p.grad is not None]
        squares = torch.zeros(2, dtype=torch.float64, device=self.device)  # [whole on every replica, my shards]
        for grad in grads:
            part = grad.to_local() if isinstance(grad, DTensor) else grad
            squares[int(isinstance(grad, DTensor))] += part.double().pow(2).sum()
        shards = squares[1:].clone()
        dist.all_reduce(shards)
        norm = float((squares[0] + shards[0]).sqrt())
        scale = limit / (norm + 1e-6)  # torch.nn.utils.clip_grad_norm_'s rule
        if scale < 1.0:
            for grad in grads:
                grad.mul_(scale)
        return norm

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["optimizers"] = [
            {**saved, "state": {i: {k: whole(v) for k, v in entry.items()} for i, entry in saved["state"].items()}}
            for saved in state["optimizers"]
        ]
        return state

    def load_state_dict(self, state: dict) -> None:
        if states_fit(state["optimizers"], self.optimizers):  # else the Learner's own refusal below
            pairs = zip(self.optimizers, state["optimizers"], strict=True)
            state = {**state, "optimizers": [_sharded_state(opt, saved) for opt, saved in pairs]}
        super().load_state_dict(state)


def _sharded_state(optimizer: torch.optim.Optimizer, saved: dict) -> dict:
    """A whole-tensor optimizer state dict with each sharded parameter's moments cut like the parameter (every
    replica holds the whole state, so each keeps its own shard and nothing is sent)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, entry in saved["state"].items():
        param = params[index]
        state[index] = {
            key: distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
            if isinstance(param, DTensor) and torch.is_tensor(value) and value.shape == param.shape
            else value
            for key, value in entry.items()
        }
    return {**saved, "state": state}


class LearnerReplica:
    """One rank: a ReplicaLearner (sharded with `sharded`) built in this actor, joined to the group by
    `rendezvous` + `join`."""

    def __init__(self, build: LearnerBuilder, rank: int, world: int, num_threads: int, sharded: bool = False) -> None:
        import transformers

        torch.set_num_threads(num_threads)
        transformers.utils.logging.disable_progress_bar()
        self.rank, self.world = rank, world
        self.learner = build(learner_cls=ShardedReplicaLearner if sharded else ReplicaLearner)
        self._store: dist.TCPStore | None = None

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0: serve the group's key-value store on a free port; returns its (host, port)."""
        import ray

        host = ray.util.get_node_ip_address()
        self._store = dist.TCPStore(host, 0, self.world, is_master=True, wait_for_workers=False)
        return host, self._store.port

    def join(self, host: str, port: int) -> None:
        store = self._store or dist.TCPStore(host, port, self.world, is_master=False)
        backend = "nccl" if self.learner.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=store, rank=self.rank, world_size=self.world)
        if isinstance(self.learner, ShardedReplicaLearner):
            self.learner.shard()

    def prepare(self, batch: TrainBatch) -> tuple[TrainBatch, dict[str, float]]:
        metrics: dict[str, float] = {}
        return self.learner.prepare(batch, metrics).to("cpu"), metrics

    def step(self, batch: TrainBatch) -> dict[str, float]:
        return self.learner.step(batch)

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The whole weights (sharded ones gathered: then every replica must call this at once)."""
        return {name: whole(tensor).detach().to("cpu") for name, tensor in self.learner.model.state_dict().items()}


class DistributedLearner:
    """The Learner API (`prepare`, `step`, `state_dict`, `load_state_dict`, `model`, `step_count`) over
    `workers` ReplicaLearners in Ray actors; `RLLoop` uses it like a Learner."""

    def __init__(
        self,
        build: LearnerBuilder,
        workers: int,
        *,
        model: PreTrainedModel,
        ray_cfg: RayConfig | None = None,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        sharding: str = "none",
    ) -> None:
        """`build(learner_cls=...)` runs in every actor (it must pickle: a module-level function or a partial of
        one); `model` is this process's mirror, holding the same weights as what `build` loads. `sharding`:
        rl.learner_sharding."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._mirror, self._mirror_stale = model, False
        self.sharded = sharding == "fsdp2"
        self.step_count = 0
        self.replicas: list[Any] = []
        self._placement = None
        ray_cfg = ray_cfg or RayConfig()
        self._owns_ray = init_ray(ray_cfg)
        try:
            bundle = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
            fix = "rl.learner_workers or rl.learner_cpus_per_worker (or raise ray.num_cpus)"
            self._placement = reserve_bundles(bundle, workers, ray_cfg.placement_strategy, "learner workers", fix)
            actor = ray.remote(LearnerReplica)
            for rank in range(workers):
                strategy = PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=rank)
                options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker, "max_restarts": 0}
                handle = actor.options(scheduling_strategy=strategy, **options)
                threads = max(1, int(cpus_per_worker))
                self.replicas.append(handle.remote(build, rank, workers, threads, self.sharded))
            host, port = self._call(self.replicas[0].rendezvous)
            self._all("join", host, port)
        except BaseException:
            self.shutdown()
            raise

    @staticmethod
    def _call(method: Any, *args: Any) -> Any:
        return DistributedLearner._get([method.remote(*args)])[0]

    def _all(self, method: str, *args: Any) -> list[Any]:
        return self._get([getattr(replica, method).remote(*args) for replica in self.replicas])

    @staticmethod
    def _get(refs: list[Any]) -> list[Any]:
        import ray

        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:  # the replica's own exception (a UserError stays one)
            raise exc.as_instanceof_cause() from None

    @property
    def model(self) -> PreTrainedModel:
        """The current weights (rank 0's), in this process; read-only: changes here do not reach the replicas."""
        if self._mirror_stale:
            self._mirror.load_state_dict(self._from_rank0("model_state"))
            self._mirror_stale = False
        return self._mirror

    def prepare(self, batch: TrainBatch, metrics: dict[str, float] | None = None) -> TrainBatch:
        import ray

        prepared, computed = self._all("prepare", ray.put(batch.to("cpu")))[0]
        if metrics is not None:
            metrics.update(computed)
        return prepared

    def step(self, batch: TrainBatch) -> dict[str, float]:
        import ray

        metrics = self._all("step", ray.put(batch.to("cpu")))[0]
        self.step_count += 1
        self._mirror_stale = True
        return metrics

    def state_dict(self) -> dict:
        return self._from_rank0("state_dict")

    def _from_rank0(self, method: str) -> Any:
        """Rank 0's answer; sharded replicas gather whole tensors together, so all of them are asked."""
        return self._all(method)[0] if self.sharded else self._call(getattr(self.replicas[0], method))

    def load_state_dict(self, state: dict) -> None:
        import ray

        self._all("load_state_dict", ray.put(state))
        self.step_count = int(state["step"])

    def shutdown(self) -> None:
        """Stop the replicas and free their placement; stop Ray only if this learner started it."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if ray.is_initialized():
            for replica in self.replicas:
                ray.kill(replica, no_restart=True)
            if self._placement is not None:
                remove_placement_group(self._placement)
        self.replicas, self._placement = [], None
        if self._owns_ray:
            shutdown_ray()
            self._owns_ray = False

    def __enter__(self) -> DistributedLearner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
