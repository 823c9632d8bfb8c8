"""How new policy weights travel from the learner to the rollout workers (`rollout.weight_sync`).

- `object_store`: one `ray.put` of the weights packed into a few flat byte buffers (`PackedWeights`) that
  every worker reads (zero extra copies on a node; one transfer per node across nodes, then one
  host-to-device copy per worker). Flat buffers, because Ray pickles a dict of tensors tensor by tensor: for
  zaya-tiny's 131 tensors that took 30 ms to put and 24 ms to load, against a few ms for one buffer. The
  fleet keeps the reference so that a replacement worker can load the same weights.
- `collective`: a torch.distributed broadcast from the learner's process (rank 0) to every worker (rank
  slot + 1): gloo over TCP on CPU, NCCL (RCCL on ROCm builds) between GPUs, which moves the weights once per
  link (ring/tree) instead of once per worker. The weights are sent as flat same-dtype buckets described by a
  `Manifest` (names, shapes, dtypes, tied weights sent once). Groups are standalone `ProcessGroupGloo` /
  `ProcessGroupNCCL` objects, not the default group, so the learner's own process group (data parallel) and
  any number of fleets can coexist in one process. Every group is formed behind a rendezvous on the driver's
  TCPStore that the driver can call off (`abort`) when a worker dies before joining; a group that breaks
  mid-broadcast is dropped on the driver's side, which closes its connections so live receivers fail at once.
  The fleet then replaces the dead workers and repeats the sync under a new generation of the group.
"""

from __future__ import annotations

import datetime
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

WEIGHT_SYNC: dict[str, type] = {}
BUCKET_BYTES = 64 << 20  # flat buffers of at most this size (a larger tensor travels alone)
COLLECTIVE_TIMEOUT_S = 600  # rendezvous and per-operation timeout of a collective sync
POLL_S = 0.05


def bucket_indices(sizes: Sequence[tuple[int, Any]], limit: int | None = None) -> list[list[int]]:
    """Runs of consecutive item indices with one dtype and at most `limit` (default BUCKET_BYTES) bytes each;
    items are (bytes, dtype)."""
    limit = BUCKET_BYTES if limit is None else limit
    runs: list[list[int]] = []
    total, dtype = 0, None
    for index, (nbytes, kind) in enumerate(sizes):
        if not runs or kind != dtype or total + nbytes > limit:
            runs.append([])
            total, dtype = 0, kind
        runs[-1].append(index)
        total += nbytes
    return runs


class WeightSync(Protocol):
    """A payload-style backend: `RolloutFleet.sync_weights` hands its payload to every worker's `load_weights`
    and keeps it for replacements. `CollectiveSync` is not one: the fleet drives its broadcast itself."""

    def publish(self, state_dict: Mapping[str, torch.Tensor]) -> Any:
        """Payload that `RolloutWorker.load_weights` receives (Ray resolves object refs on the way)."""


class ObjectStoreSync:
    def __init__(self, gpus: bool = False) -> None:
        """Tensors go through host memory whether or not the workers have GPUs."""

    def publish(self, state_dict: Mapping[str, torch.Tensor]) -> Any:
        import ray

        return ray.put(PackedWeights.of(state_dict))


@dataclass(frozen=True)
class Manifest:
    """What a receiver allocates: the tensors in send order, and names that share a sent tensor (tied weights)."""

    entries: tuple[tuple[str, tuple[int, ...], torch.dtype], ...]
    aliases: dict[str, str] = field(default_factory=dict)  # name -> the sent name it shares storage with

    @classmethod
    def of(cls, state_dict: Mapping[str, torch.Tensor]) -> Manifest:
        entries, aliases, seen = [], {}, {}
        for name, tensor in state_dict.items():
            key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype, tensor.device)
            if tensor.numel() and key in seen:
                aliases[name] = seen[key]
                continue
            seen[key] = name
            entries.append((name, tuple(tensor.shape), tensor.dtype))
        return cls(tuple(entries), aliases)

    def buckets(self) -> list[list[int]]:
        return bucket_indices([(_nbytes(shape, dtype), dtype) for _, shape, dtype in self.entries])

    def flatten(self, state_dict: Mapping[str, torch.Tensor], run: list[int], device: str) -> torch.Tensor:
        """One bucket's tensors as one flat tensor on `device`, in send order."""
        names = [self.entries[i][0] for i in run]
        return torch.cat([state_dict[name].detach().reshape(-1).to(device) for name in names])

    def unflatten(self, run: list[int], flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """One bucket's tensors as views of `flat`."""
        entries = [self.entries[i] for i in run]
        sizes = [_numel(shape) for _, shape, _ in entries]
        return {name: part.view(shape) for (name, shape, _), part in zip(entries, flat.split(sizes), strict=True)}

    def with_aliases(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return state | {name: state[target] for name, target in self.aliases.items()}

    @property
    def nbytes(self) -> int:
        """Bytes one sync moves to each worker."""
        return sum(_nbytes(shape, dtype) for _, shape, dtype in self.entries)


@dataclass(frozen=True)
class PackedWeights:
    """A state dict as its Manifest and one flat byte buffer per bucket: numpy, which Ray stores and maps
    without pickling tensor by tensor (bytes, so that bf16 travels too)."""

    manifest: Manifest
    buffers: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, state_dict: Mapping[str, torch.Tensor]) -> PackedWeights:
        manifest = Manifest.of(state_dict)
        flats = [manifest.flatten(state_dict, run, "cpu") for run in manifest.buckets()]
        return cls(manifest, tuple(flat.view(torch.uint8).numpy() for flat in flats))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Views of the buffers (read-only where Ray mapped them from its store: load them, never write)."""
        state: dict[str, torch.Tensor] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for run, buffer in zip(self.manifest.buckets(), self.buffers, strict=True):
                state |= self.manifest.unflatten(run, torch.from_numpy(buffer).view(self.manifest.entries[run[0]][2]))
        return self.manifest.with_aliases(state)


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return _numel(shape) * dtype.itemsize


@dataclass(frozen=True)
class GroupSpec:
    """Where and how rank `slot + 1` joins generation `generation` of the fleet's broadcast group."""

    host: str
    port: int
    world: int
    generation: int
    backend: str  # gloo | nccl
    timeout_s: float = COLLECTIVE_TIMEOUT_S

    def key(self, what: str) -> str:
        return f"weights/{self.generation}/{what}"


class SyncAborted(RuntimeError):
    """The driver called off this generation's rendezvous (a member died before joining)."""


def _rendezvous(spec: GroupSpec, store: dist.Store, rank: int, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until every rank of the generation has checked in; raises SyncAborted when the driver calls it off
    (or, on the driver, when `alive()` turns false)."""
    store.set(spec.key(f"ready/{rank}"), "1")
    ready = [spec.key(f"ready/{r}") for r in range(spec.world)]
    deadline = time.monotonic() + spec.timeout_s
    while not store.check(ready):
        if store.check([spec.key("abort")]) or not alive():
            raise SyncAborted(f"weight sync generation {spec.generation} was called off")
        if time.monotonic() > deadline:
            raise TimeoutError(f"weight sync: not every worker joined within {spec.timeout_s:g}s")
        time.sleep(POLL_S)


def _open_group(spec: GroupSpec, store: dist.Store, rank: int) -> Any:
    prefixed = dist.PrefixStore(spec.key("group"), store)
    timeout = datetime.timedelta(seconds=spec.timeout_s)
    if spec.backend == "nccl":  # RCCL on ROCm builds; needs a CUDA build of torch (untested here: no GPU)
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(prefixed, rank, spec.world, options)
    return dist.ProcessGroupGloo(prefixed, rank, spec.world, timeout)


def _broadcast(group: Any, tensor: torch.Tensor) -> None:
    options = dist.BroadcastOptions()
    options.rootRank = 0
    group.broadcast([tensor], options).wait()


class CollectiveSync:
    """The sending side, in the learner's process: rank 0 of each generation's group."""

    def __init__(self, gpus: bool = False) -> None:
        """NCCL when the workers have GPUs and so does this process (RCCL on ROCm builds), else gloo."""
        import ray

        self.backend = "nccl" if gpus and torch.cuda.is_available() else "gloo"
        self.device = "cuda" if self.backend == "nccl" else "cpu"
        self.host = ray.util.get_node_ip_address()
        self.store = dist.TCPStore(self.host, 0, None, is_master=True, wait_for_workers=False,
                                   timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))  # fmt: skip
        self.generation = 0
        self.members: tuple = ()
        self._group: Any = None

    def spec(self, members: tuple) -> GroupSpec:
        """The group for these receivers (one id per worker incarnation): the current generation while it is
        intact and has the same members, else a new one."""
        if members != self.members or self._group is None:
            self.close()
            self.generation += 1
            self.members = members
        return self._spec()

    def _spec(self) -> GroupSpec:
        return GroupSpec(self.host, self.store.port, len(self.members) + 1, self.generation, self.backend)

    def send(self, state_dict: Mapping[str, torch.Tensor], manifest: Manifest, alive: Callable[[], bool]) -> None:
        """Join the generation (after every worker checked in) and broadcast every bucket. `alive()` is polled
        during the rendezvous; when it turns false the generation is called off."""
        spec = self._spec()
        if self._group is None:
            try:
                _rendezvous(spec, self.store, 0, alive)
            except SyncAborted:
                self.abort()
                raise
            self._group = _open_group(spec, self.store, 0)
        try:
            for run in manifest.buckets():
                _broadcast(self._group, manifest.flatten(state_dict, run, self.device))
        except RuntimeError:
            self.close()  # closing our connections makes every live receiver fail at once
            raise

    def abort(self) -> None:
        """Call off the current generation: receivers waiting in its rendezvous give up."""
        self.store.set(self._spec().key("abort"), "1")
        self.close()

    def close(self) -> None:
        self._group = None  # gloo closes its connections when the group is freed


class CollectiveReceiver:
    """The receiving side, in a rollout worker: keeps its group across syncs until the generation changes."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, int], dist.Store] = {}
        self._group: Any = None
        self._generation: int | None = None

    def receive(self, spec: GroupSpec, rank: int, manifest: Manifest) -> dict[str, torch.Tensor]:
        if spec.generation != self._generation:
            self._group, self._generation = None, None
            address = (spec.host, spec.port)
            if address not in self._stores:
                timeout = datetime.timedelta(seconds=spec.timeout_s)
                self._stores[address] = dist.TCPStore(spec.host, spec.port, None, is_master=False, timeout=timeout)
            store = self._stores[address]
            _rendezvous(spec, store, rank)
            self._group, self._generation = _open_group(spec, store, rank), spec.generation
        device = "cuda" if spec.backend == "nccl" else "cpu"
        state: dict[str, torch.Tensor] = {}
        try:
            for run in manifest.buckets():
                size = sum(_numel(manifest.entries[i][1]) for i in run)
                flat = torch.empty(size, dtype=manifest.entries[run[0]][2], device=device)
                _broadcast(self._group, flat)
                state |= manifest.unflatten(run, flat)
        except RuntimeError:
            self._group, self._generation = None, None
            raise
        return manifest.with_aliases(state)


WEIGHT_SYNC["object_store"] = ObjectStoreSync
WEIGHT_SYNC["collective"] = CollectiveSync
